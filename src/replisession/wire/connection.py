"""One peer connection as a sans-IO state machine, in the style of h11's ``Connection``.

The net layer owns the socket and does three things: it sends what :meth:`initiate`,
:meth:`send`, :meth:`data_to_send` and :meth:`refusal` return, in the order they
return it; it passes every received chunk to :meth:`receive_data` and acts on the
events; and on :class:`~replisession.errors.RemoteProtocolError` it logs the message,
sends :meth:`refusal` if the handshake was not complete, and closes the socket.

The handshake: the member that dialled (the initiator) sends HELLO(cluster, member,
nonce); the other (the responder) checks it and answers WELCOME(cluster, member,
nonce), or the net layer answers REFUSE(reason) and closes. HELLO is authenticated
with the cluster key, WELCOME with a key bound to the HELLO's nonce (a recorded
WELCOME completes no later handshake); everything after them with per-direction
keys derived from the cluster key and both nonces (see ``auth.py``).

Key confirmation: a recorded HELLO can be replayed by anyone, so the responder
does not count the peer as established until the first frame sealed with the new
session key arrives. The initiator sends one at once (an empty HEARTBEAT, queued
in :meth:`data_to_send` with the WELCOME's processing), so the net layer must send
:meth:`data_to_send` after every :meth:`receive_data`, on both sides.

States and transitions are tables; a (state, frame type) pair that is not in them is
a protocol error, never a silent no-op.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, LocalProtocolError, RemoteProtocolError
from .auth import FrameOpener, FrameSealer, derive_session_keys, derive_welcome_key
from .frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_COMPRESSED,
    MAC_SIZE,
    FrameDecoder,
    RawFrame,
    compress,
    decompress,
    encode_frame,
    frame_header,
)
from .messages import (
    BATCH_BYTES,
    MAX_BATCH,
    PROTOCOL_VERSION,
    FrameType,
    Heartbeat,
    Hello,
    MemberInfo,
    Message,
    Refuse,
    Welcome,
    batch_body,
    decode_batch,
    decode_message,
    encode_message,
)

__all__ = ["ConnectionState", "Established", "Event", "PeerConnection", "Received", "Refused"]

_NONCE_SIZE = 16
_MAX_REFUSE_REASON = 256  # Refuse's schema limit


class ConnectionState(enum.Enum):
    IDLE = "IDLE"  # initiator, before initiate()
    HELLO_SENT = "HELLO_SENT"  # initiator, waiting for WELCOME or REFUSE
    AWAITING_HELLO = "AWAITING_HELLO"  # responder, waiting for HELLO
    CONFIRMING = "CONFIRMING"  # responder, WELCOME sent, waiting for proof the initiator holds the session key
    ESTABLISHED = "ESTABLISHED"
    CLOSED = "CLOSED"  # refused, or closed by us; received bytes are discarded
    ERROR = "ERROR"  # the peer broke the protocol; terminal


_S = ConnectionState
_F = FrameType
_FRAME_TYPES = {int(frame_type): frame_type for frame_type in FrameType}
_TRAFFIC = (_F.HEARTBEAT, _F.LEAVE, _F.DATA, _F.ACK, _F.BATCH)  # the only frames after the handshake
_TRAFFIC_TYPES = {int(frame_type): frame_type for frame_type in _TRAFFIC}

# (our state, frame type we send) -> our next state. REFUSE is not here: refusal()
# makes bytes for the net layer to send while closing, in any state.
_SEND: dict[tuple[ConnectionState, FrameType], ConnectionState] = {
    (_S.IDLE, _F.HELLO): _S.HELLO_SENT,
    **{(_S.ESTABLISHED, frame_type): _S.ESTABLISHED for frame_type in _TRAFFIC},
}

# (our state, frame type received) -> our next state. The responder's WELCOME is
# queued as part of receiving HELLO.
_RECEIVE: dict[tuple[ConnectionState, FrameType], ConnectionState] = {
    (_S.HELLO_SENT, _F.WELCOME): _S.ESTABLISHED,
    (_S.HELLO_SENT, _F.REFUSE): _S.CLOSED,
    (_S.AWAITING_HELLO, _F.HELLO): _S.CONFIRMING,
    **{(_S.CONFIRMING, frame_type): _S.ESTABLISHED for frame_type in _TRAFFIC},
    **{(_S.ESTABLISHED, frame_type): _S.ESTABLISHED for frame_type in _TRAFFIC},
}


class Event:
    """Base of what :meth:`PeerConnection.receive_data` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Established(Event):
    """The handshake succeeded; ``peer`` is the authenticated member at the other end."""

    peer: MemberInfo


@dataclass(frozen=True, slots=True)
class Received(Event):
    """An authenticated message from the peer."""

    message: Message


@dataclass(frozen=True, slots=True)
class Refused(Event):
    """The responder refused our HELLO. ``reason`` is unauthenticated peer text: log it with ``!r``."""

    reason: str


def _random_nonce() -> bytes:
    return secrets.token_bytes(_NONCE_SIZE)


class PeerConnection:
    """Our end of one TCP connection to a peer member."""

    def __init__(
        self,
        *,
        initiator: bool,
        local: MemberInfo,
        cluster: str,
        cluster_key: bytes,
        max_frame_size: object = DEFAULT_MAX_FRAME_SIZE,
        compress_threshold: object = None,
        nonce_factory: Callable[[], object] = _random_nonce,
    ) -> None:
        # Settings are typed ``object`` and checked here: compiled, a typed parameter would
        # refuse a wrong type with a bare TypeError (or turn True into 1) before this check.
        threshold: int | None = None
        if compress_threshold is not None:
            if type(compress_threshold) is bool or not isinstance(compress_threshold, int) or compress_threshold < 0:
                raise ConfigError(
                    f"compress_threshold must be a non-negative integer or None, not {compress_threshold!r}"
                )
            threshold = compress_threshold
        self._decoder = FrameDecoder(max_frame_size)
        self._max_frame_size = self._decoder.max_frame_size
        self._compress_threshold = threshold
        # The nonce is drawn now so that a bad factory fails here, not halfway through
        # a handshake.
        nonce: object = nonce_factory()
        if not isinstance(nonce, bytes) or len(nonce) != _NONCE_SIZE:
            raise ConfigError(f"nonce_factory must return {_NONCE_SIZE} random bytes, not {nonce!r}")
        try:
            self._introduction: Message = (Hello if initiator else Welcome)(cluster, local, nonce)
        except RemoteProtocolError as exc:  # the schema check speaks of the remote side
            raise ConfigError(f"cannot introduce this member: {exc}") from exc
        self._initiator = initiator
        self._local = local
        self._cluster = cluster
        self._cluster_key = cluster_key
        self._nonce = nonce
        # The handshake frames are sealed with the cluster key, one counter per direction.
        self._sealer = FrameSealer(cluster_key)
        self._opener = FrameOpener(cluster_key)
        self._state = _S.IDLE if initiator else _S.AWAITING_HELLO
        self._peer: MemberInfo | None = None
        self._outgoing = bytearray()

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def peer(self) -> MemberInfo | None:
        """The member at the other end, once the handshake succeeded (and was confirmed)."""
        return self._peer if self._state is _S.ESTABLISHED else None

    # -- sending ---------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The HELLO frame; initiator only, once."""
        self._state = self._next_send(_F.HELLO)
        hello = self._seal(_F.HELLO, encode_message(self._introduction)[1], 0)
        self._opener = FrameOpener(derive_welcome_key(self._cluster_key, self._nonce))
        return hello

    def send(self, message: Message) -> bytes:
        """The frame bytes of ``message`` (HEARTBEAT, LEAVE, DATA or ACK), once established.

        Bytes still queued by :meth:`receive_data` come first, so the WELCOME can never
        be overtaken. A :class:`LocalProtocolError` (wrong state, unencodable or too
        large message) consumes no sequence number: the connection stays usable.
        """
        self._next_send(message.frame_type)  # the state first: its error says more than the encoder's
        return self.send_encoded(*encode_message(message))

    def send_encoded(self, frame_type: FrameType, body: bytes) -> bytes:
        """:meth:`send` of a message already encoded by ``encode_message``: a message for
        several peers is encoded once, and sealed for each connection."""
        next_state = self._next_send(frame_type)
        self._check_size(frame_type, body)
        flags = 0
        if self._compress_threshold is not None and len(body) > self._compress_threshold:
            packed = compress(body)
            if len(packed) < len(body):  # incompressible bodies go as they are
                body, flags = packed, FLAG_COMPRESSED
        frame = self._seal(frame_type, body, flags)
        self._state = next_state
        return self.data_to_send() + frame if self._outgoing else frame

    def check_send(self, frame_type: FrameType, body: bytes) -> None:
        """Raise the :class:`LocalProtocolError` that :meth:`send_encoded` would raise for this
        message now (wrong state, too large), without sealing it: for a caller that seals
        later, with :meth:`seal`."""
        if frame_type is _F.BATCH:
            raise LocalProtocolError("a BATCH is made by seal(), not sent")
        self._next_send(frame_type)
        self._check_size(frame_type, body)

    def _check_size(self, frame_type: FrameType, body: bytes) -> None:
        if len(body) > self._max_frame_size:
            raise LocalProtocolError(
                f"{frame_type.name} body of {len(body)} bytes exceeds the maximum frame size of "
                f"{self._max_frame_size} bytes"
            )

    def seal(self, encoded: list[tuple[FrameType, bytes]]) -> bytes:
        """The frames of several encoded messages, in order: one frame for one message,
        else BATCH frames, each of at most ``BATCH_BYTES`` (every member accepts that much,
        whatever its own maximum frame size) and ``MAX_BATCH`` messages; a message larger
        than that goes alone. Every body is built before any is sealed, so an error seals nothing."""
        if len(encoded) == 1:
            return self.send_encoded(*encoded[0])
        limit = min(BATCH_BYTES, self._max_frame_size)
        frames: list[tuple[FrameType, bytes]] = []
        group: list[tuple[FrameType, bytes]] = []
        size = 0
        for item in encoded:
            if group and (size + 1 + len(item[1]) > limit or len(group) == MAX_BATCH):
                frames.append(self._group(group))
                group, size = [], 0
            group.append(item)
            size += 1 + len(item[1])
        frames.append(self._group(group))
        return b"".join([self.send_encoded(frame_type, body) for frame_type, body in frames])

    @staticmethod
    def _group(group: list[tuple[FrameType, bytes]]) -> tuple[FrameType, bytes]:
        return group[0] if len(group) == 1 else (_F.BATCH, batch_body(group))

    def data_to_send(self) -> bytes:
        """Bytes that receiving produced (the responder's WELCOME, the initiator's key
        confirmation), cleared as they are returned."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def refusal(self, reason: str) -> bytes:
        """An unauthenticated REFUSE frame to send before closing during the handshake.

        It works in any state, including ERROR, because it is sent after the error.
        It carries no MAC (all zeros): its typical cause is a peer that does not share
        our key, which could not check one. That gives an attacker nothing: it can only
        end a handshake, which anyone on the path can do by resetting the TCP connection.
        """
        body = encode_message(Refuse(reason[:_MAX_REFUSE_REASON]))[1]
        return encode_frame(_F.REFUSE, body, 0, bytes(MAC_SIZE))

    def close(self) -> None:
        """We are done with this connection; later received bytes are discarded. ERROR stays ERROR."""
        if self._state is not _S.ERROR:
            self._state = _S.CLOSED

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Events for the frames that ``data`` completes.

        Raises only :class:`RemoteProtocolError`, after which the connection is in
        state ERROR and events of earlier frames of the same chunk are dropped with it.
        """
        if self._state is _S.ERROR:
            raise RemoteProtocolError("cannot receive: the connection already failed")
        if self._state is _S.CLOSED:
            return []
        events: list[Event] = []
        try:
            for frame in self._decoder.feed(data):
                traffic = _TRAFFIC_TYPES.get(frame.frame_type) if self._state is _S.ESTABLISHED else None
                if traffic is not None:  # every replication message: no state tables to consult
                    body = self._body(frame, traffic)
                    if traffic is _F.BATCH:
                        events.extend([Received(message) for message in decode_batch(body)])
                    else:
                        events.append(Received(decode_message(traffic, body)))
                    continue
                events.extend(self._receive_frame(frame))
                if events and isinstance(events[-1], Refused):  # the connection is over; ignore what follows
                    break
        except RemoteProtocolError:
            self._fail()
            raise
        except Exception as exc:  # a bug must still cost only this connection
            self._fail()
            raise RemoteProtocolError(f"unexpected error while reading a frame: {exc!r}") from exc
        return events

    def _receive_frame(self, frame: RawFrame) -> list[Event]:
        frame_type = _FRAME_TYPES.get(frame.frame_type)
        if frame_type is None:
            raise RemoteProtocolError(f"unknown frame type {frame.frame_type}")
        next_state = _RECEIVE.get((self._state, frame_type))
        if next_state is None:
            raise RemoteProtocolError(f"unexpected {frame_type.name} frame in state {self._state.name}")
        messages = self._messages(frame_type, self._body(frame, frame_type))
        message = messages[0]  # a BATCH holds at least one, and only traffic
        events: list[Event] = []
        if isinstance(message, Hello):
            self._on_hello(message)
        elif isinstance(message, Welcome):
            events.append(self._on_welcome(message))
        elif isinstance(message, Refuse):
            events.append(Refused(message.reason))
        else:
            if self._state is _S.CONFIRMING:
                assert self._peer is not None
                events.append(Established(self._peer))  # the initiator proved it holds the session key
            events.extend([Received(m) for m in messages])
        self._state = next_state
        return events

    def _body(self, frame: RawFrame, frame_type: FrameType) -> bytes:
        """The frame's body, authenticated, then inflated: apart from a (bounded) REFUSE, only
        a key holder can make us decompress anything. REFUSE is read unauthenticated (see
        refusal()); the table admits it only while we wait for WELCOME, and all it can do
        is end that handshake."""
        if frame_type is not _F.REFUSE:
            try:
                self._opener.verify(frame.header, frame.body, frame.mac)
            except RemoteProtocolError as exc:
                if frame_type in (_F.HELLO, _F.WELCOME):
                    raise RemoteProtocolError("authentication failed: wrong cluster secret?") from exc
                raise
        return decompress(frame.body, self._max_frame_size) if frame.flags & FLAG_COMPRESSED else frame.body

    @staticmethod
    def _messages(frame_type: FrameType, body: bytes) -> list[Message]:
        return decode_batch(body) if frame_type is _F.BATCH else [decode_message(frame_type, body)]

    def _on_hello(self, hello: Hello) -> None:
        # The name is checked after the MAC, so only a holder of the secret learns ours.
        self._check_peer(hello.cluster, hello.member)
        if hello.protocol != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"protocol version {hello.protocol} is not supported (we speak {PROTOCOL_VERSION})"
            )
        body = encode_message(self._introduction)[1]
        welcome_key = derive_welcome_key(self._cluster_key, hello.nonce)
        mac = FrameSealer(welcome_key).seal(frame_header(_F.WELCOME, 0, len(body)), body)
        self._outgoing += encode_frame(_F.WELCOME, body, 0, mac)
        self._establish(hello.member, initiator_nonce=hello.nonce, responder_nonce=self._nonce)

    def _on_welcome(self, welcome: Welcome) -> Established:
        self._check_peer(welcome.cluster, welcome.member)
        self._establish(welcome.member, initiator_nonce=self._nonce, responder_nonce=welcome.nonce)
        # Key confirmation for the responder: the first frame under the session key.
        self._outgoing += self._seal(_F.HEARTBEAT, encode_message(Heartbeat())[1], 0)
        return Established(welcome.member)

    def _check_peer(self, cluster: str, member: MemberInfo) -> None:
        if cluster != self._cluster:
            raise RemoteProtocolError(f"cluster name {cluster!r} is not ours ({self._cluster!r})")
        if member.incarnation == self._local.incarnation:
            # A seed list that names our own address, or an incarnation drawn before a fork.
            raise RemoteProtocolError(f"the peer {member} has our own incarnation: connected to ourselves?")

    def _establish(self, peer: MemberInfo, *, initiator_nonce: bytes, responder_nonce: bytes) -> None:
        i2r, r2i = derive_session_keys(self._cluster_key, initiator_nonce, responder_nonce)
        ours, theirs = (i2r, r2i) if self._initiator else (r2i, i2r)
        self._sealer = FrameSealer(ours)  # fresh counters for the session keys
        self._opener = FrameOpener(theirs)
        self._peer = peer

    # -- helpers ---------------------------------------------------------------------

    def _next_send(self, frame_type: FrameType) -> ConnectionState:
        if self._state is _S.ESTABLISHED and frame_type in _TRAFFIC_TYPES:
            return _S.ESTABLISHED  # the usual case, without hashing the state (an Enum hashes in Python)
        next_state = _SEND.get((self._state, frame_type))
        if next_state is None:
            raise LocalProtocolError(f"cannot send {frame_type.name} in state {self._state.name}")
        return next_state

    def _seal(self, frame_type: FrameType, body: bytes, flags: int) -> bytes:
        header = frame_header(frame_type, flags, len(body))
        return header + body + self._sealer.seal(header, body)

    def _fail(self) -> None:
        self._state = _S.ERROR
        self._outgoing.clear()
