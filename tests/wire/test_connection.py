"""PeerConnection: two in-memory ends driven against each other, and every way a peer can break the protocol."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replisession.cluster_config import MIN_FRAME_SIZE
from replisession.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from replisession.wire import connection as connection_module
from replisession.wire import messages as messages_module
from replisession.wire.auth import FrameSealer, derive_cluster_key, derive_session_keys, derive_welcome_key
from replisession.wire.connection import ConnectionState, Established, Event, PeerConnection, Received, Refused
from replisession.wire.frames import FLAG_COMPRESSED, HEADER_SIZE, FrameDecoder, compress, encode_frame, frame_header
from replisession.wire.messages import (
    BATCH_BYTES,
    MAX_BATCH,
    Ack,
    Data,
    FrameType,
    Heartbeat,
    Hello,
    Leave,
    MemberInfo,
    Message,
    Refuse,
    SendMode,
    Welcome,
    decode_message,
    encode_message,
)

KEY = derive_cluster_key(b"s3cret")
ALICE = MemberInfo("alice", "10.0.0.1", 4000, "a" * 32)
BOB = MemberInfo("bob", "10.0.0.2", 4000, "b" * 32)
NONCE_I = b"I" * 16
NONCE_R = b"R" * 16
I2R, R2I = derive_session_keys(KEY, NONCE_I, NONCE_R)
WELCOME_KEY = derive_welcome_key(KEY, NONCE_I)
MAX = 1024
HEARTBEAT_BODY = encode_message(Heartbeat())[1]

AUTH_FAILED = r"^frame authentication failed \(frame #{} of this direction\): forged, tampered or replayed$"
WRONG_SECRET = r"^authentication failed: wrong cluster secret\?$"
S = ConnectionState


def make(initiator: bool, **kwargs: Any) -> PeerConnection:
    settings: dict[str, Any] = {
        "local": ALICE if initiator else BOB,
        "cluster": "prod",
        "cluster_key": KEY,
        "max_frame_size": MAX,
        "nonce_factory": lambda: NONCE_I if initiator else NONCE_R,
    }
    settings.update(kwargs)
    return PeerConnection(initiator=initiator, **settings)


def confirming(**kwargs: Any) -> tuple[PeerConnection, PeerConnection]:
    """The initiator has sent HELLO; the responder has queued its WELCOME and waits for key confirmation."""
    initiator, responder = make(True, **kwargs), make(False, **kwargs)
    assert responder.receive_data(initiator.initiate()) == []
    assert responder.state is S.CONFIRMING
    return initiator, responder


def established(**kwargs: Any) -> tuple[PeerConnection, PeerConnection]:
    """Both ends established. The key confirmation used seq 0 of I2R: the initiator's next frame is seq 1."""
    initiator, responder = confirming(**kwargs)
    assert initiator.receive_data(responder.data_to_send()) == [Established(BOB)]
    assert responder.receive_data(initiator.data_to_send()) == [Established(ALICE), Received(Heartbeat())]
    return initiator, responder


def forge(frame_type: int, body: bytes | dict[str, Any], key: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    """A frame sealed as the ``seq``-th frame of a direction keyed by ``key``."""
    if isinstance(body, dict):
        body = msgpack.packb(body, use_bin_type=True)
    sealer = FrameSealer(key)
    for _ in range(seq):
        sealer.seal(b"", b"")
    return encode_frame(frame_type, body, flags, sealer.seal(frame_header(frame_type, flags, len(body)), body))


def decode_frames(data: bytes) -> list[tuple[int, Message]]:
    return [(f.flags, decode_message(f.frame_type, f.body)) for f in FrameDecoder().feed(data)]


def fails(connection: PeerConnection, data: bytes, message: str) -> pytest.ExceptionInfo[RemoteProtocolError]:
    with pytest.raises(RemoteProtocolError, match=message) as info:
        connection.receive_data(data)
    assert connection.state is S.ERROR
    return info


# -- the handshake ---------------------------------------------------------------------


def test_handshake() -> None:
    initiator, responder = make(True), make(False)
    assert (initiator.state, responder.state, initiator.peer, responder.peer) == (S.IDLE, S.AWAITING_HELLO, None, None)
    hello = initiator.initiate()
    assert initiator.state is S.HELLO_SENT
    assert decode_frames(hello) == [(0, Hello("prod", ALICE, NONCE_I))]
    assert responder.receive_data(hello) == []  # a HELLO proves nothing: anyone can replay one
    assert responder.state is S.CONFIRMING
    welcome = responder.data_to_send()
    assert decode_frames(welcome) == [(0, Welcome("prod", BOB, NONCE_R))]
    assert responder.data_to_send() == b""
    assert initiator.receive_data(welcome) == [Established(BOB)]
    assert (initiator.state, initiator.peer) == (S.ESTABLISHED, BOB)
    confirmation = initiator.data_to_send()
    assert decode_frames(confirmation) == [(0, Heartbeat())]
    assert initiator.data_to_send() == b""
    assert responder.receive_data(confirmation) == [Established(ALICE), Received(Heartbeat())]
    assert (responder.state, responder.peer) == (S.ESTABLISHED, ALICE)
    assert responder.data_to_send() == b""


def test_handshake_one_byte_at_a_time() -> None:
    initiator, responder = make(True), make(False)
    events = [e for byte in initiator.initiate() for e in responder.receive_data(bytes([byte]))]
    assert events == []
    events = [e for byte in responder.data_to_send() for e in initiator.receive_data(bytes([byte]))]
    assert events == [Established(BOB)]
    events = [e for byte in initiator.data_to_send() for e in responder.receive_data(bytes([byte]))]
    assert events == [Established(ALICE), Received(Heartbeat())]


def test_the_hello_is_sealed_with_the_cluster_key_and_the_welcome_with_the_welcome_key() -> None:
    assert make(True).initiate() == forge(FrameType.HELLO, encode_message(Hello("prod", ALICE, NONCE_I))[1], KEY)
    _, responder = confirming()
    welcome_body = encode_message(Welcome("prod", BOB, NONCE_R))[1]
    assert responder.data_to_send() == forge(FrameType.WELCOME, welcome_body, WELCOME_KEY)


def test_the_key_confirmation_is_an_empty_heartbeat_sealed_with_the_session_key() -> None:
    initiator, responder = confirming()
    initiator.receive_data(responder.data_to_send())
    assert initiator.data_to_send() == forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, I2R)


def test_traffic_is_sealed_with_the_per_direction_session_keys() -> None:
    initiator, responder = established()
    assert initiator.send(Heartbeat()) == forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, I2R, seq=1)
    assert responder.send(Heartbeat()) == forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, R2I)
    assert initiator.send(Heartbeat()) == forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, I2R, seq=2)


def test_the_confirmation_and_the_first_frames_can_arrive_in_one_chunk() -> None:
    initiator, responder = confirming()
    initiator.receive_data(responder.data_to_send())
    chunk = initiator.send(Heartbeat((ALICE,)))  # the queued confirmation comes first
    assert initiator.data_to_send() == b""
    assert responder.receive_data(chunk + initiator.send(Leave())) == [
        Established(ALICE),
        Received(Heartbeat()),
        Received(Heartbeat((ALICE,))),
        Received(Leave()),
    ]
    assert responder.state is S.ESTABLISHED


def test_any_traffic_frame_under_the_session_key_confirms() -> None:
    _, responder = confirming()
    data = Data(1, SendMode.ASYNC, "k", "v")
    frame = forge(FrameType.DATA, encode_message(data)[1], I2R)
    assert responder.receive_data(frame) == [Established(ALICE), Received(data)]
    assert responder.state is S.ESTABLISHED


def test_default_nonces_are_random() -> None:
    hellos = [
        decode_frames(PeerConnection(initiator=True, local=ALICE, cluster="prod", cluster_key=KEY).initiate())[0][1]
        for _ in range(2)
    ]
    nonces = [hello.nonce for hello in hellos if isinstance(hello, Hello)]
    assert len(nonces) == 2
    assert len(nonces[0]) == 16
    assert nonces[0] != nonces[1]


# -- messages, both ways -----------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=20)
members = st.builds(
    MemberInfo,
    st.none() | text,
    text,
    st.integers(1, 65535),
    st.text("0123456789abcdef", min_size=32, max_size=32),
)
payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | text | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
messages = st.one_of(
    st.builds(Heartbeat, st.lists(members, max_size=3).map(tuple)),
    st.just(Leave()),
    st.builds(Data, st.integers(0, 2**63 - 1), st.sampled_from(SendMode), text, payloads),
    st.builds(Ack, st.integers(0, 2**63 - 1), st.booleans(), text),
)


def deliver(connection: PeerConnection, stream: bytes, data: st.DataObject) -> list[Event]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += connection.receive_data(stream[start:end])
    return events


@given(
    st.lists(messages, max_size=5),
    st.lists(messages, max_size=5),
    st.none() | st.integers(0, 64),
    st.data(),
)
def test_messages_round_trip_both_ways_however_chunked(
    to_responder: list[Message], to_initiator: list[Message], threshold: int | None, data: st.DataObject
) -> None:
    initiator, responder = established(compress_threshold=threshold, max_frame_size=64 * 1024)
    assert deliver(responder, b"".join(map(initiator.send, to_responder)), data) == list(map(Received, to_responder))
    assert deliver(initiator, b"".join(map(responder.send, to_initiator)), data) == list(map(Received, to_initiator))
    assert (initiator.state, responder.state) == (S.ESTABLISHED, S.ESTABLISHED)


def test_large_bodies_are_compressed_above_the_threshold() -> None:
    message = Data(1, SendMode.SYNC, "delta", {"cart": ["item"] * 100})
    size = len(encode_message(message)[1])
    for threshold, flags in [(size, 0), (size - 1, FLAG_COMPRESSED), (None, 0)]:
        initiator, responder = established(compress_threshold=threshold)
        frame = initiator.send(message)
        assert frame[4] == flags
        assert responder.receive_data(frame) == [Received(message)]


def test_incompressible_bodies_are_sent_as_they_are() -> None:
    message = Data(1, SendMode.ASYNC, "blob", random.Random(0).randbytes(500))
    initiator, responder = established(compress_threshold=0)
    frame = initiator.send(message)
    assert frame[4] == 0
    assert responder.receive_data(frame) == [Received(message)]


# -- local misuse --------------------------------------------------------------------------


def test_only_a_fresh_initiator_initiates() -> None:
    with pytest.raises(LocalProtocolError, match=r"^cannot send HELLO in state AWAITING_HELLO$"):
        make(False).initiate()
    initiator = make(True)
    initiator.initiate()
    with pytest.raises(LocalProtocolError, match=r"^cannot send HELLO in state HELLO_SENT$"):
        initiator.initiate()


def test_nothing_is_sent_before_the_handshake() -> None:
    with pytest.raises(LocalProtocolError, match=r"^cannot send HEARTBEAT in state IDLE$"):
        make(True).send(Heartbeat())
    with pytest.raises(LocalProtocolError, match=r"^cannot send DATA in state AWAITING_HELLO$"):
        make(False).send(Data(1, SendMode.ASYNC, "k", None))


@pytest.mark.parametrize("message", [Heartbeat(), Leave(), Data(1, SendMode.ASYNC, "k", None), Ack(1)])
def test_the_responder_cannot_send_before_the_key_confirmation(message: Message) -> None:
    initiator, responder = confirming()
    with pytest.raises(LocalProtocolError, match=f"^cannot send {message.frame_type.name} in state CONFIRMING$"):
        responder.send(message)
    # Nothing was consumed: the WELCOME is still queued, and the handshake completes.
    assert responder.state is S.CONFIRMING
    assert initiator.receive_data(responder.data_to_send()) == [Established(BOB)]
    assert responder.receive_data(initiator.data_to_send()) == [Established(ALICE), Received(Heartbeat())]
    assert initiator.receive_data(responder.send(message)) == [Received(message)]


@pytest.mark.parametrize(
    "message",
    [Hello("prod", ALICE, NONCE_I), Welcome("prod", ALICE, NONCE_I), Refuse("no")],
    ids=lambda m: type(m).__name__,
)
def test_handshake_messages_cannot_be_sent_once_established(message: Message) -> None:
    initiator, _ = established()
    with pytest.raises(LocalProtocolError, match=f"^cannot send {message.frame_type.name} in state ESTABLISHED$"):
        initiator.send(message)


def test_a_refused_send_consumes_nothing() -> None:
    initiator, responder = established()
    with pytest.raises(
        LocalProtocolError, match=r"^DATA body of 20\d\d bytes exceeds the maximum frame size of 1024 bytes$"
    ):
        initiator.send(Data(1, SendMode.ASYNC, "big", b"x" * 2000))
    with pytest.raises(LocalProtocolError, match=r"^cannot encode Data: "):
        initiator.send(Data(2, SendMode.ASYNC, "set", {1, 2}))
    assert initiator.state is S.ESTABLISHED
    assert responder.receive_data(initiator.send(Ack(3))) == [Received(Ack(3))]


def test_close() -> None:
    initiator, responder = established()
    frame = initiator.send(Leave())
    responder.close()
    assert responder.state is S.CLOSED
    assert responder.receive_data(frame) == []
    with pytest.raises(LocalProtocolError, match=r"^cannot send LEAVE in state CLOSED$"):
        responder.send(Leave())


def test_close_while_confirming() -> None:
    initiator, responder = confirming()
    initiator.receive_data(responder.data_to_send())
    responder.close()
    assert responder.state is S.CLOSED
    assert responder.receive_data(initiator.data_to_send()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compress_threshold": -1}, "compress_threshold must be a non-negative integer or None, not -1"),
        ({"compress_threshold": 1.5}, "compress_threshold must be a non-negative integer or None, not 1.5"),
        ({"compress_threshold": True}, "compress_threshold must be a non-negative integer or None, not True"),
        ({"max_frame_size": 0}, "max_frame_size must be an integer in [1, 4294967295], not 0"),
        ({"nonce_factory": lambda: b"x" * 15}, "nonce_factory must return 16 random bytes, not b'xxxxxxxxxxxxxxx'"),
        ({"nonce_factory": lambda: "x" * 16}, "nonce_factory must return 16 random bytes, not 'xxxxxxxxxxxxxxxx'"),
        (
            {"cluster": "c" * 129},
            "cannot introduce this member: field 'cluster' must be a string of at most 128 characters",
        ),
    ],
)
@pytest.mark.parametrize("initiator", [True, False])
def test_settings_are_checked_at_construction(initiator: bool, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        make(initiator, **kwargs)


# -- refusals ---------------------------------------------------------------------------------


def test_wrong_secret() -> None:
    initiator, responder = make(True, cluster_key=derive_cluster_key(b"guess")), make(False)
    info = fails(responder, initiator.initiate(), WRONG_SECRET)
    assert isinstance(info.value.__context__, RemoteProtocolError)  # chained (compiled code keeps no __cause__)
    assert responder.data_to_send() == b""
    # The net layer answers with a refusal the initiator can read without our key.
    refusal = responder.refusal(str(info.value))
    assert initiator.receive_data(refusal) == [Refused("authentication failed: wrong cluster secret?")]
    assert (initiator.state, initiator.peer) == (S.CLOSED, None)


def test_a_welcome_with_the_wrong_secret() -> None:
    initiator = make(True)
    initiator.initiate()
    body = encode_message(Welcome("prod", BOB, NONCE_R))[1]
    fails(
        initiator,
        forge(FrameType.WELCOME, body, derive_welcome_key(derive_cluster_key(b"guess"), NONCE_I)),
        WRONG_SECRET,
    )
    assert initiator.data_to_send() == b""


def test_a_welcome_sealed_with_the_cluster_key() -> None:
    initiator = make(True)
    initiator.initiate()
    fails(initiator, forge(FrameType.WELCOME, encode_message(Welcome("prod", BOB, NONCE_R))[1], KEY), WRONG_SECRET)


def test_wrong_cluster_name() -> None:
    initiator, responder = make(True, cluster="staging"), make(False)
    info = fails(responder, initiator.initiate(), r"^cluster name 'staging' is not ours \('prod'\)$")
    assert initiator.receive_data(responder.refusal(str(info.value))) == [
        Refused("cluster name 'staging' is not ours ('prod')")
    ]


def test_a_welcome_of_another_cluster() -> None:
    initiator = make(True)
    initiator.initiate()
    welcome = forge(FrameType.WELCOME, encode_message(Welcome("staging", BOB, NONCE_R))[1], WELCOME_KEY)
    fails(initiator, welcome, r"^cluster name 'staging' is not ours \('prod'\)$")


def test_another_protocol_version() -> None:
    hello = forge(FrameType.HELLO, encode_message(Hello("prod", ALICE, NONCE_I, protocol=1))[1], KEY)
    fails(make(False), hello, r"^protocol version 1 is not supported \(we speak 3\)$")


def test_a_connection_to_ourselves() -> None:
    initiator, responder = make(True), make(False, local=ALICE)
    fails(responder, initiator.initiate(), r"^the peer alice@10\.0\.0\.1:4000/aaaaaaaa has our own incarnation")
    initiator, responder = make(True, local=BOB), make(False)
    initiator.initiate()
    welcome = forge(FrameType.WELCOME, encode_message(Welcome("prod", BOB, NONCE_R))[1], WELCOME_KEY)
    fails(
        initiator,
        welcome,
        r"^the peer bob@10\.0\.0\.2:4000/bbbbbbbb has our own incarnation: connected to ourselves\?$",
    )


def test_a_replayed_frame() -> None:
    initiator, responder = established()
    frame = initiator.send(Data(1, SendMode.ACK, "k", "v"))
    assert responder.receive_data(frame) == [Received(Data(1, SendMode.ACK, "k", "v"))]
    fails(responder, frame, AUTH_FAILED.format(2))


def test_a_frame_replayed_from_another_connection() -> None:
    initiator, _ = established()
    frame = initiator.send(Heartbeat())
    _, responder = established(nonce_factory=lambda: b"N" * 16)  # other nonces, other session keys
    fails(responder, frame, AUTH_FAILED.format(1))  # the right seq, the wrong key


def test_a_frame_reflected_to_its_sender() -> None:
    initiator, _ = established()
    fails(initiator, initiator.send(Heartbeat()), AUTH_FAILED.format(0))


@pytest.mark.parametrize(
    ("position", "bit"),
    [(3, 0x01), (4, 0x01), (HEADER_SIZE, 0x80), (-33, 0x01), (-32, 0x01), (-1, 0x80)],
    ids=["type DATA->ACK", "flags: compressed", "body first", "body last", "mac first", "mac last"],
)
def test_a_tampered_frame(position: int, bit: int) -> None:
    initiator, responder = established()
    frame = bytearray(initiator.send(Data(1, SendMode.ASYNC, "k", "value")))
    frame[position] ^= bit
    fails(responder, bytes(frame), AUTH_FAILED.format(1))


def test_a_tampered_hello() -> None:
    hello = bytearray(make(True).initiate())
    hello[HEADER_SIZE + 3] ^= 0x01
    fails(make(False), bytes(hello), WRONG_SECRET)


# -- replays of a recorded handshake ----------------------------------------------------------


def record_handshake() -> tuple[bytes, bytes, bytes]:
    """The HELLO, WELCOME and key confirmation of one complete handshake, as an eavesdropper sees them."""
    initiator, responder = make(True), make(False)
    hello = initiator.initiate()
    responder.receive_data(hello)
    welcome = responder.data_to_send()
    initiator.receive_data(welcome)
    confirmation = initiator.data_to_send()
    assert responder.receive_data(confirmation) == [Established(ALICE), Received(Heartbeat())]
    return hello, welcome, confirmation


@pytest.mark.parametrize(
    "forged",
    [
        lambda confirmation: confirmation,
        lambda _: forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, KEY),
        lambda _: forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, WELCOME_KEY),
    ],
    ids=["the recorded confirmation", "sealed with the cluster key", "sealed with the welcome key"],
)
def test_a_replayed_hello_establishes_nothing(forged: Any) -> None:
    hello, _, confirmation = record_handshake()
    # The responder draws a fresh nonce, so the replayer does not know the new session keys.
    responder = make(False, nonce_factory=lambda: b"V" * 16)
    assert responder.receive_data(hello) == []
    assert responder.state is S.CONFIRMING
    assert responder.data_to_send() == forge(
        FrameType.WELCOME, encode_message(Welcome("prod", BOB, b"V" * 16))[1], WELCOME_KEY
    )
    fails(responder, forged(confirmation), AUTH_FAILED.format(0))


def test_a_replayed_hello_twice_on_one_connection() -> None:
    hello, _, _ = record_handshake()
    responder = make(False, nonce_factory=lambda: b"V" * 16)
    fails(responder, hello + hello, r"^unexpected HELLO frame in state CONFIRMING$")


def test_a_recorded_welcome_completes_no_later_handshake() -> None:
    _, welcome, _ = record_handshake()
    later = make(True, nonce_factory=lambda: b"L" * 16)  # a later HELLO has a fresh nonce
    later.initiate()
    fails(later, welcome, WRONG_SECRET)
    assert (later.peer, later.data_to_send()) == (None, b"")
    # The same bytes complete the handshake they answer: only the nonce made the difference.
    same = make(True)
    same.initiate()
    assert same.receive_data(welcome) == [Established(BOB)]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (forge(FrameType.LEAVE, {"bye": True}, I2R), r"^LEAVE must have exactly the fields \[\], got \['bye'\]$"),
        (forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, I2R, seq=1), AUTH_FAILED.format(0)),
        (forge(FrameType.HEARTBEAT, HEARTBEAT_BODY, R2I), AUTH_FAILED.format(0)),
    ],
    ids=["authentic but malformed", "the wrong seq", "the other direction's key"],
)
def test_a_bad_key_confirmation_establishes_nothing(frame: bytes, message: str) -> None:
    _, responder = confirming()
    fails(responder, frame, message)
    assert responder.data_to_send() == b""


def test_an_oversized_frame_is_refused_from_its_header() -> None:
    _, responder = established()
    fails(
        responder,
        frame_header(FrameType.DATA, 0, MAX + 1),
        f"^frame body of {MAX + 1} bytes exceeds the maximum frame size of {MAX} bytes$",
    )


@pytest.mark.parametrize(
    "responder",
    [lambda: make(False), lambda: confirming()[1], lambda: established()[1]],
    ids=["fresh", "confirming", "established"],
)
def test_garbage(responder: Callable[[], PeerConnection]) -> None:
    fails(responder(), b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", r"^bad frame magic b'GE': the peer does not speak")


def test_another_frame_version() -> None:
    frame = bytearray(make(True).initiate())
    frame[2] = 2  # a member from before transfers said how long ended ids are remembered
    fails(make(False), bytes(frame), r"^unsupported frame version 2 \(we speak 3\)$")


@pytest.mark.parametrize("frame_type", [0, 9, 99, 255])
def test_an_unknown_frame_type(frame_type: int) -> None:
    _, responder = established()
    fails(responder, forge(frame_type, {}, I2R), f"^unknown frame type {frame_type}$")


@pytest.mark.parametrize(
    ("initiator", "frame_type", "state"),
    [
        (False, FrameType.DATA, "AWAITING_HELLO"),
        (False, FrameType.HEARTBEAT, "AWAITING_HELLO"),
        (False, FrameType.WELCOME, "AWAITING_HELLO"),
        (False, FrameType.REFUSE, "AWAITING_HELLO"),
        (True, FrameType.WELCOME, "IDLE"),
        (True, FrameType.REFUSE, "IDLE"),
        (True, FrameType.HELLO, "IDLE"),
    ],
)
def test_a_frame_before_the_handshake(initiator: bool, frame_type: FrameType, state: str) -> None:
    fails(make(initiator), forge(frame_type, {}, KEY), f"^unexpected {frame_type.name} frame in state {state}$")


@pytest.mark.parametrize("frame_type", [FrameType.DATA, FrameType.ACK, FrameType.HELLO, FrameType.HEARTBEAT])
def test_a_frame_while_waiting_for_welcome(frame_type: FrameType) -> None:
    initiator = make(True)
    initiator.initiate()
    fails(initiator, forge(frame_type, {}, KEY), f"^unexpected {frame_type.name} frame in state HELLO_SENT$")


@pytest.mark.parametrize("frame_type", [FrameType.HELLO, FrameType.WELCOME, FrameType.REFUSE])
@pytest.mark.parametrize("stage", ["CONFIRMING", "ESTABLISHED"])
def test_a_handshake_frame_after_the_hello(stage: str, frame_type: FrameType) -> None:
    responder = confirming()[1] if stage == "CONFIRMING" else established()[1]
    frame = make(True).initiate() if frame_type is FrameType.HELLO else forge(frame_type, {}, I2R)
    fails(responder, frame, f"^unexpected {frame_type.name} frame in state {stage}$")


@pytest.mark.parametrize("frame_type", [FrameType.HELLO, FrameType.WELCOME, FrameType.REFUSE])
def test_a_handshake_frame_after_the_welcome(frame_type: FrameType) -> None:
    initiator, _ = established()
    frame = make(False).refusal("late") if frame_type is FrameType.REFUSE else forge(frame_type, {}, R2I)
    fails(initiator, frame, f"^unexpected {frame_type.name} frame in state ESTABLISHED$")


def test_a_decompression_bomb() -> None:
    _, responder = established()
    bomb = compress(msgpack.packb({"id": 1, "mode": 0, "kind": "k", "payload": bytes(100 * MAX)}))
    assert len(bomb) < MAX
    fails(
        responder,
        forge(FrameType.DATA, bomb, I2R, seq=1, flags=FLAG_COMPRESSED),
        f"^compressed body inflates past the limit of {MAX} bytes$",
    )


def test_authenticated_garbage_that_claims_to_be_compressed() -> None:
    _, responder = established()
    fails(
        responder,
        forge(FrameType.DATA, b"not zlib", I2R, seq=1, flags=FLAG_COMPRESSED),
        "^compressed body is not a valid zlib stream",
    )


@pytest.mark.parametrize(
    ("frame_type", "body", "message"),
    [
        (
            FrameType.DATA,
            {"id": 1, "mode": 0, "kind": "k", "payload": None, "extra": 1},
            "DATA must have exactly the fields ['id', 'kind', 'mode', 'payload'], "
            "got ['extra', 'id', 'kind', 'mode', 'payload']",
        ),
        (
            FrameType.DATA,
            {"id": -1, "mode": 0, "kind": "k", "payload": None},
            "field 'msg_id' must be an integer in [0, 9223372036854775807]",
        ),
        (
            FrameType.DATA,
            {"id": 1, "mode": 3, "kind": "k", "payload": None},
            "field 'mode' must be an integer in [0, 2]",
        ),
        (FrameType.ACK, {"id": 1, "ok": 1, "error": "", "more": []}, "field 'ok' must be a boolean"),
        (
            FrameType.ACK,
            {"id": 1, "ok": True, "error": ""},
            "ACK must have exactly the fields ['error', 'id', 'more', 'ok'], got ['error', 'id', 'ok']",
        ),
        (FrameType.ACK, {"id": 1, "ok": True, "error": "", "more": 2}, "field 'more' must be a list of message ids"),
        (
            FrameType.ACK,
            {"id": 1, "ok": True, "error": "", "more": [2, -1]},
            "field 'more' must be an integer in [0, 9223372036854775807]",
        ),
        (FrameType.HEARTBEAT, {"members": [["r", "h", 0, "a" * 32]]}, "field 'port' must be an integer in [1, 65535]"),
        (FrameType.LEAVE, {"bye": True}, "LEAVE must have exactly the fields [], got ['bye']"),
    ],
)
def test_schema_violations_in_traffic(frame_type: FrameType, body: dict[str, Any], message: str) -> None:
    _, responder = established()
    fails(responder, forge(frame_type, body, I2R, seq=1), f"^{re.escape(message)}$")


def test_a_hello_with_a_short_nonce() -> None:
    body = {"cluster": "prod", "member": ALICE.to_wire(), "nonce": b"n" * 15, "protocol": 1}
    fails(make(False), forge(FrameType.HELLO, body, KEY), r"^field 'nonce' must be 16 bytes$")


def test_a_body_that_is_not_msgpack() -> None:
    _, responder = established()
    fails(responder, forge(FrameType.ACK, b"\xc1", I2R, seq=1), r"^Ack body is not valid msgpack: ")


# -- after an error, after a refusal ------------------------------------------------------


def test_an_error_is_final() -> None:
    initiator, responder = established()
    fails(responder, b"garbage!!", "^bad frame magic")
    with pytest.raises(RemoteProtocolError, match=r"^cannot receive: the connection already failed$"):
        responder.receive_data(initiator.send(Heartbeat()))
    with pytest.raises(LocalProtocolError, match=r"^cannot send HEARTBEAT in state ERROR$"):
        responder.send(Heartbeat())
    responder.close()
    assert responder.state is S.ERROR
    assert decode_frames(responder.refusal("bye")) == [(0, Refuse("bye"))]


def test_an_error_drops_what_the_same_chunk_produced() -> None:
    responder = make(False)
    fails(responder, make(True).initiate() + b"garbage!!", "^bad frame magic")
    assert responder.data_to_send() == b""


def test_an_unexpected_failure_is_still_a_remote_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(frame_type: int, body: bytes) -> Message:
        raise KeyError("boom")

    monkeypatch.setattr(connection_module, "decode_message", broken)
    info = fails(make(False), make(True).initiate(), r"^unexpected error while reading a frame: KeyError\('boom'\)$")
    assert isinstance(info.value.__context__, KeyError)  # chained (compiled code keeps no __cause__)


def test_the_refusal_frame() -> None:
    refusal = make(False).refusal("no")
    assert refusal == encode_frame(FrameType.REFUSE, msgpack.packb({"reason": "no"}), 0, bytes(32))


def test_nothing_after_a_refusal_is_read() -> None:
    initiator, responder = make(True), make(False)
    initiator.initiate()
    refusal = responder.refusal("x" * 300)  # long reasons are cut to the schema's 256 characters
    assert initiator.receive_data(refusal + refusal) == [Refused("x" * 256)]
    assert initiator.state is S.CLOSED
    assert initiator.receive_data(b"anything at all") == []


# -- several messages sealed together -------------------------------------------------------


def encoded(*messages: Message) -> list[tuple[FrameType, bytes]]:
    return [encode_message(message) for message in messages]


def test_messages_sealed_together_are_one_batch_frame_received_in_order() -> None:
    initiator, responder = established()
    messages = [Data(n, SendMode.SYNC, "delta", {"n": n}) for n in range(5)] + [Ack(9, more=(10,)), Heartbeat()]
    wire = initiator.seal(encoded(*messages))
    assert [frame.frame_type for frame in FrameDecoder(MAX).feed(wire)] == [FrameType.BATCH]
    assert responder.receive_data(wire) == [Received(message) for message in messages]
    # One message alone is its own frame; the sequence numbers run on across both kinds.
    wire = initiator.seal(encoded(Leave()))
    assert [frame.frame_type for frame in FrameDecoder(MAX).feed(wire)] == [FrameType.LEAVE]
    assert responder.receive_data(wire) == [Received(Leave())]


def test_a_batch_larger_than_a_frame_is_split_in_order() -> None:
    initiator, responder = established()
    messages = [Data(n, SendMode.ASYNC, "delta", {"blob": bytes(300)}) for n in range(10)]
    wire = initiator.seal(encoded(*messages))
    frames = FrameDecoder(MAX).feed(wire)
    assert len(frames) > 1
    assert all(len(frame.body) <= MAX for frame in frames)
    assert responder.receive_data(wire) == [Received(message) for message in messages]


def test_a_batch_right_after_the_key_confirmation_establishes_the_responder() -> None:
    initiator, responder = confirming()
    initiator.receive_data(responder.data_to_send())  # WELCOME: the confirmation is queued
    wire = initiator.data_to_send() + initiator.seal(encoded(Data(1, SendMode.ASYNC, "k", None), Leave()))
    assert responder.receive_data(wire) == [
        Established(ALICE),
        Received(Heartbeat()),
        Received(Data(1, SendMode.ASYNC, "k", None)),
        Received(Leave()),
    ]


def test_check_send_refuses_what_sealing_would_refuse_and_consumes_nothing() -> None:
    initiator, responder = established()
    with pytest.raises(LocalProtocolError, match=r"^DATA body of 1025 bytes exceeds the maximum frame size"):
        initiator.check_send(FrameType.DATA, bytes(1025))
    with pytest.raises(LocalProtocolError, match=r"^cannot send HELLO in state ESTABLISHED$"):
        initiator.check_send(FrameType.HELLO, b"")
    initiator.check_send(FrameType.DATA, bytes(10))
    assert responder.receive_data(initiator.send(Leave())) == [Received(Leave())]


def test_a_forged_batch_is_refused_before_it_is_decoded() -> None:
    _, responder = established()
    body = messages_module.batch_body(encoded(Leave(), Leave()))
    fails(responder, forge(FrameType.BATCH, body, R2I, seq=1), AUTH_FAILED.format(1))


def test_batches_fit_any_member_whatever_the_senders_maximum_frame_size() -> None:
    # The sender accepts 16 MiB frames, the receiver only 64 KiB (the smallest allowed):
    # messages that each fit the receiver must never reach it in one frame too large.
    initiator, small = make(True, max_frame_size=16 * 1024 * 1024), make(False, max_frame_size=64 * 1024)
    small.receive_data(initiator.initiate())
    initiator.receive_data(small.data_to_send())
    small.receive_data(initiator.data_to_send())
    messages = [Data(n, SendMode.ASYNC, "delta", {"blob": bytes(5000)}) for n in range(40)]
    wire = initiator.seal(encoded(*messages))
    assert all(len(frame.body) <= BATCH_BYTES for frame in FrameDecoder(16 * 1024 * 1024).feed(wire))
    assert small.receive_data(wire) == [Received(message) for message in messages]


def test_a_batch_holds_at_most_max_batch_messages() -> None:
    initiator, responder = established(max_frame_size=16 * 1024 * 1024)
    messages = [Heartbeat()] * (MAX_BATCH + 5)
    wire = initiator.seal(encoded(*messages))
    frames = FrameDecoder(16 * 1024 * 1024).feed(wire)
    assert [frame.frame_type for frame in frames] == [FrameType.BATCH, FrameType.BATCH]
    assert len(responder.receive_data(wire)) == MAX_BATCH + 5


def test_a_batch_is_never_sent_as_a_message() -> None:
    initiator, _ = established()
    with pytest.raises(LocalProtocolError, match=r"^a BATCH is made by seal\(\), not sent$"):
        initiator.check_send(FrameType.BATCH, b"")


def test_a_batch_fits_the_smallest_maximum_frame_size_a_member_may_set() -> None:
    assert BATCH_BYTES == MIN_FRAME_SIZE
