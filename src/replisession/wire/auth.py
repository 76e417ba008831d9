"""Frame authentication: HMAC-SHA256 with per-direction keys and sequence numbers.

Tomcat's cluster traffic is plaintext and unauthenticated by default, and its
EncryptInterceptor leaves the header in clear, relies on a clock-based replay window
and was bypassed by unencrypted frames (weak points 5 and 6). Here every frame but a
handshake REFUSE carries a MAC over its header and body, so nothing from a peer is
decoded before it is authenticated (invariant 4).

Keys: the cluster secret gives a cluster key; HELLO is authenticated with it,
WELCOME with a key bound to the HELLO's nonce, and then each direction of a
connection gets its own key derived from the cluster key and both handshake nonces. A frame recorded on one
connection is therefore worthless on any other, and a frame cannot be reflected back
to its sender.

Sequence numbers: the MAC covers a per-direction counter that both ends keep and that
is never sent. A frame replayed, reordered, or with a frame missing before it is
computed against the wrong counter and fails, with no clock involved. TCP delivers in
order and exactly once, so any mismatch is an attack or a bug, never bad luck.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Protocol

from ..errors import RemoteProtocolError

__all__ = ["FrameOpener", "FrameSealer", "derive_cluster_key", "derive_session_keys", "derive_welcome_key"]

_CLUSTER_KEY_LABEL = b"replisession cluster key v1"
_SEQ = struct.Struct(">Q")
_JOINED = 4096  # bodies up to this size are joined to the counter and header for one MAC update
# 2**64 frames is out of reach (58,000 years at ten million frames a second), so the
# counter never wraps and a (key, seq) pair is never used twice.


def _mac(keyed: _Keyed, seq: int, header: bytes, body: bytes) -> bytes:
    # The header has a fixed size (and carries the body length): header + body splits one way only.
    # ``keyed`` is the HMAC state after the key: copying it skips re-deriving the pads per frame.
    mac = keyed.copy()
    if len(body) <= _JOINED:  # one update of a short copy is cheaper than three updates
        mac.update(_SEQ.pack(seq) + header + body)
    else:
        mac.update(_SEQ.pack(seq))
        mac.update(header)
        mac.update(body)
    return mac.digest()


def derive_cluster_key(secret: bytes | None) -> bytes:
    """The key that authenticates handshakes of a cluster sharing ``secret``.

    No secret (``None`` or empty) still gives a fixed key, so frames are checked for
    integrity; it then only keeps out peers that do not speak the protocol.
    """
    return hmac.new(secret or b"", _CLUSTER_KEY_LABEL, hashlib.sha256).digest()


def derive_welcome_key(cluster_key: bytes, initiator_nonce: bytes) -> bytes:
    """The key of the WELCOME that answers one HELLO.

    Binding the WELCOME to the initiator's fresh nonce means a recorded WELCOME
    cannot complete a later handshake (the cluster key alone would allow that).
    """
    return hmac.new(cluster_key, b"welcome" + initiator_nonce, hashlib.sha256).digest()


def derive_session_keys(cluster_key: bytes, initiator_nonce: bytes, responder_nonce: bytes) -> tuple[bytes, bytes]:
    """The (initiator to responder, responder to initiator) keys of one connection."""
    nonces = initiator_nonce + responder_nonce
    return (
        hmac.new(cluster_key, b"i2r" + nonces, hashlib.sha256).digest(),
        hmac.new(cluster_key, b"r2i" + nonces, hashlib.sha256).digest(),
    )


class _Keyed(Protocol):
    def copy(self) -> _Keyed: ...

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


try:  # OpenSSL's HMAC object, as ``hmac.new`` uses it: copy, update and digest are C calls
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # not CPython, or built without OpenSSL
    _openssl_hmac = None  # type: ignore[assignment]


def _keyed(key: bytes) -> _Keyed:
    """The HMAC-SHA256 state after ``key``, copied for each frame (copy, update, digest)."""
    if _openssl_hmac is not None:
        try:
            return _openssl_hmac(key, digestmod="sha256")
        except ValueError:  # an OpenSSL that refuses it (a FIPS mode): the hmac module's own
            pass
    return hmac.new(key, digestmod=hashlib.sha256)


class FrameSealer:
    """Computes the MACs of the frames we send in one direction, in order."""

    __slots__ = ("_keyed", "_seq")

    def __init__(self, key: bytes) -> None:
        self._keyed = _keyed(key)
        self._seq = 0

    def seal(self, header: bytes, body: bytes) -> bytes:
        """The MAC of the next frame. Every sealed frame must be sent, in sealing order."""
        mac = _mac(self._keyed, self._seq, header, body)
        self._seq += 1
        return mac


class FrameOpener:
    """Checks the MACs of the frames we receive in one direction, in order."""

    __slots__ = ("_keyed", "_seq")

    def __init__(self, key: bytes) -> None:
        self._keyed = _keyed(key)
        self._seq = 0

    def verify(self, header: bytes, body: bytes, mac: bytes) -> None:
        """Accept the next frame, or raise :class:`RemoteProtocolError` (and expect the same seq again)."""
        if not hmac.compare_digest(_mac(self._keyed, self._seq, header, body), mac):
            raise RemoteProtocolError(
                f"frame authentication failed (frame #{self._seq} of this direction): forged, tampered or replayed"
            )
        self._seq += 1
