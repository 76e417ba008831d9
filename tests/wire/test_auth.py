"""Frame authentication: key derivation vectors, and the MAC's sequence number refusing replays."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from replisession.errors import RemoteProtocolError
from replisession.wire import auth
from replisession.wire.auth import (
    FrameOpener,
    FrameSealer,
    derive_cluster_key,
    derive_session_keys,
    derive_welcome_key,
)

# Vectors checked against `openssl dgst -sha256 -hmac`, so another implementation can be tested against them.
CLUSTER_KEY = bytes.fromhex("5d158b90036ff61419048ef21377aeb09a624cc3ae954cdc1c4ff02091248246")
NONCE_I = bytes(range(16))
NONCE_R = bytes(range(16, 32))

FAILED = r"^frame authentication failed \(frame #{} of this direction\): forged, tampered or replayed$"


def test_cluster_key_vectors() -> None:
    assert derive_cluster_key(b"secret") == CLUSTER_KEY
    no_secret = bytes.fromhex("f67d6d2c6ab39538c7a53c70b61c61512dff554451289b7c1d5473f81a35f907")
    assert derive_cluster_key(None) == no_secret
    assert derive_cluster_key(b"") == no_secret
    assert derive_cluster_key(b"secreT") != CLUSTER_KEY


def test_session_key_vectors() -> None:
    assert derive_session_keys(CLUSTER_KEY, NONCE_I, NONCE_R) == (
        bytes.fromhex("ca40b0ca51a39a870460cae7f96103b8db767d97be2359195005d405cf0d3de7"),
        bytes.fromhex("604745a3214d10f43c97e1edd1525de2256454210de644f77bcd9c2fc8d02027"),
    )


def test_session_keys_depend_on_both_nonces_and_their_roles() -> None:
    keys = derive_session_keys(CLUSTER_KEY, NONCE_I, NONCE_R)
    others = [
        derive_session_keys(CLUSTER_KEY, NONCE_R, NONCE_I),
        derive_session_keys(CLUSTER_KEY, NONCE_I, bytes(16)),
        derive_session_keys(CLUSTER_KEY, bytes(16), NONCE_R),
        derive_session_keys(derive_cluster_key(b"other"), NONCE_I, NONCE_R),
    ]
    every_key = [keys[0], keys[1], *(k for pair in others for k in pair)]
    assert len(set(every_key)) == len(every_key)


def test_welcome_key_vector() -> None:
    assert derive_welcome_key(CLUSTER_KEY, NONCE_I) == bytes.fromhex(
        "b680e24e4694c9abf8e27cfce48f3cfd5e868f0ee1cb5a601e03821cf1c48d73"
    )


def test_welcome_keys_depend_on_the_nonce_and_the_cluster_key_only() -> None:
    key = derive_welcome_key(CLUSTER_KEY, NONCE_I)
    assert derive_welcome_key(CLUSTER_KEY, NONCE_I) == key  # deterministic: both ends derive it
    others = [
        derive_welcome_key(CLUSTER_KEY, NONCE_R),
        derive_welcome_key(CLUSTER_KEY, bytes(16)),
        derive_welcome_key(derive_cluster_key(b"other"), NONCE_I),
    ]
    # Nor is it any key of the connection it opens, nor the cluster key itself.
    session_keys = derive_session_keys(CLUSTER_KEY, NONCE_I, NONCE_R)
    every_key = [key, *others, *session_keys, CLUSTER_KEY]
    assert len(set(every_key)) == len(every_key)


def test_seal_is_hmac_over_seq_header_and_body() -> None:
    sealer = FrameSealer(CLUSTER_KEY)
    assert sealer.seal(b"h", b"b") == bytes.fromhex("44fd1dee6d1246f7f6fdb4074453d58a54eb1f10680710e3f00a67aec64780eb")
    expected_second = hmac.new(CLUSTER_KEY, (1).to_bytes(8, "big") + b"hb", hashlib.sha256).digest()
    assert sealer.seal(b"h", b"b") == expected_second  # same frame, next seq: a different MAC


@pytest.mark.parametrize("openssl", [True, False], ids=["openssl-hmac", "hmac-module"])
@pytest.mark.parametrize("size", [0, 100, 4096, 4097, 70_000])  # joined into one update up to 4096 bytes
def test_the_mac_is_the_same_with_either_hmac_object_and_any_body(
    monkeypatch: pytest.MonkeyPatch, openssl: bool, size: int
) -> None:
    if not openssl:
        monkeypatch.setattr(auth, "_openssl_hmac", None)
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealer, opener = FrameSealer(CLUSTER_KEY), FrameOpener(CLUSTER_KEY)
    for seq in range(3):
        mac = sealer.seal(b"header567", body)
        assert mac == hmac.new(CLUSTER_KEY, seq.to_bytes(8, "big") + b"header567" + body, hashlib.sha256).digest()
        opener.verify(b"header567", body, mac)


def test_frames_open_in_order() -> None:
    sealer, opener = FrameSealer(CLUSTER_KEY), FrameOpener(CLUSTER_KEY)
    frames = [(b"header%d" % i, b"body%d" % i) for i in range(5)]
    for header, body in frames:
        opener.verify(header, body, sealer.seal(header, body))


def sealed(count: int) -> list[tuple[bytes, bytes, bytes]]:
    sealer = FrameSealer(CLUSTER_KEY)
    return [(b"h%d" % i, b"b%d" % i, sealer.seal(b"h%d" % i, b"b%d" % i)) for i in range(count)]


def test_a_replayed_frame_fails() -> None:
    first, _ = sealed(2)
    opener = FrameOpener(CLUSTER_KEY)
    opener.verify(*first)
    with pytest.raises(RemoteProtocolError, match=FAILED.format(1)):
        opener.verify(*first)


def test_reordered_frames_fail() -> None:
    _first, second = sealed(2)
    with pytest.raises(RemoteProtocolError, match=FAILED.format(0)):
        FrameOpener(CLUSTER_KEY).verify(*second)


def test_a_dropped_frame_makes_the_next_one_fail() -> None:
    first, _second, third = sealed(3)
    opener = FrameOpener(CLUSTER_KEY)
    opener.verify(*first)
    with pytest.raises(RemoteProtocolError, match=FAILED.format(1)):
        opener.verify(*third)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_flipped_bit_anywhere_fails(part: int) -> None:
    frame = list(sealed(1)[0])
    frame[part] = bytes([frame[part][0] ^ 0x01]) + frame[part][1:]
    with pytest.raises(RemoteProtocolError, match=FAILED.format(0)):
        FrameOpener(CLUSTER_KEY).verify(*frame)


def test_a_failure_consumes_no_sequence_number() -> None:
    first, second = sealed(2)
    opener = FrameOpener(CLUSTER_KEY)
    with pytest.raises(RemoteProtocolError):
        opener.verify(*second)
    opener.verify(*first)
    opener.verify(*second)


def test_another_key_fails() -> None:
    with pytest.raises(RemoteProtocolError, match=FAILED.format(0)):
        FrameOpener(derive_cluster_key(b"wrong")).verify(*sealed(1)[0])
