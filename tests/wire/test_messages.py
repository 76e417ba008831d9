"""Message schemas as the wire sees them: every message round-trips, every malformed body is refused."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgpack
import pytest

from replisession.errors import LocalProtocolError, RemoteProtocolError
from replisession.wire import messages
from replisession.wire.messages import (
    PROTOCOL_VERSION,
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
    batch_body,
    decode_batch,
    decode_message,
    encode_message,
)

ALICE = MemberInfo("alice", "10.0.0.1", 4000, "0123456789abcdef" * 2)
NONCE = bytes(range(16))


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    "message",
    [
        Hello("prod", ALICE, NONCE),
        Welcome("prod", ALICE, NONCE),
        Refuse("wrong cluster"),
        Heartbeat((ALICE, MemberInfo(None, "h", 1, "f" * 32))),
        Leave(),
        Data(7, SendMode.SYNC, "delta", {"k": [1, b"2", None]}),
        Ack(7, ok=False, error="boom"),
        Ack(7, more=(8, 12, 9)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_message_round_trips(message: Message) -> None:
    frame_type, body = encode_message(message)
    assert frame_type is message.frame_type
    assert decode_message(frame_type, body) == message


def test_a_hello_carries_the_protocol_version() -> None:
    assert Hello("prod", ALICE, NONCE).protocol == PROTOCOL_VERSION == 3
    assert msgpack.unpackb(encode_message(Hello("prod", ALICE, NONCE))[1]) == {
        "cluster": "prod",
        "member": ["alice", "10.0.0.1", 4000, "0123456789abcdef" * 2],
        "nonce": NONCE,
        "protocol": 3,
    }


def test_member_info() -> None:
    assert ALICE.id == "0123456789abcdef" * 2
    assert ALICE.address == ("10.0.0.1", 4000)
    assert str(ALICE) == "alice@10.0.0.1:4000/01234567"
    assert str(MemberInfo(None, "h", 1, "f" * 32)) == "-@h:1/ffffffff"


@pytest.mark.parametrize("incarnation", ["A" * 32, "a" * 31, "a" * 33, "g" * 32, 7])
def test_an_incarnation_is_32_lower_case_hex_characters(incarnation: Any) -> None:
    with pytest.raises(RemoteProtocolError, match=r"^field 'incarnation' must be 32 lower-case hex characters$"):
        MemberInfo("r", "h", 1, incarnation)


@pytest.mark.parametrize("value", [("r", "h", 1, "a" * 32), ["r", "h", 1], "r@h:1"])
def test_a_member_on_the_wire_is_a_list_of_four(value: Any) -> None:
    with pytest.raises(RemoteProtocolError, match=r"^a member must be \[route, host, port, incarnation\]$"):
        MemberInfo.from_wire(value)


def test_the_message_base_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Message().body()
    with pytest.raises(NotImplementedError):
        Message.from_body({})


def test_heartbeat_member_lists_are_bounded() -> None:
    too_many = [ALICE] * 4097
    with pytest.raises(RemoteProtocolError, match=r"^field 'members' must list at most 4096 members$"):
        Heartbeat(tuple(too_many))
    with pytest.raises(RemoteProtocolError, match=r"^field 'members' must list at most 4096 members$"):
        Heartbeat(too_many)  # type: ignore[arg-type]
    assert decode_message(FrameType.HEARTBEAT, packed({"members": [ALICE.to_wire()] * 4096})) == Heartbeat(
        (ALICE,) * 4096
    )
    for members in ([ALICE.to_wire()] * 4097, {"a": 1}, None):
        with pytest.raises(RemoteProtocolError, match=r"^field 'members' must list at most 4096 members$"):
            decode_message(FrameType.HEARTBEAT, packed({"members": members}))


def test_a_data_mode_is_a_send_mode() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^field 'mode' must be a send mode$"):
        Data(1, 1, "k", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame_type", "body", "message"),
    [
        (99, packed({}), "unknown frame type 99"),
        (FrameType.DATA, b"\xd4\x05x", "msgpack extension type 5 is not allowed in peer messages"),
        (
            FrameType.DATA,
            packed({"id": 1, "mode": 0, "kind": "k", "payload": None})[:-1] + b"\xd4\x01x",  # nil -> fixext 1
            "msgpack extension type 1 is not allowed in peer messages",
        ),
        (FrameType.ACK, packed([1, True, ""]), "Ack body must be a map"),
        (FrameType.ACK, packed({1: 1}), "Ack body is not valid msgpack: "),
        (FrameType.ACK, packed({"id": 1, "ok": True}) + b"\x00", "Ack body is not valid msgpack: "),
        (FrameType.ACK, b"", "Ack body is not valid msgpack: "),
        (
            FrameType.ACK,
            packed({"id": 1, "ok": True, "error": "", "more": list(range(4096))}),
            "field 'more' must list at most 4095 message ids",
        ),
        (FrameType.REFUSE, packed({"reason": "r" * 257}), "field 'reason' must be a string of at most 256 characters"),
        (
            FrameType.WELCOME,
            packed({"cluster": "c", "member": ALICE.to_wire()}),
            "WELCOME must have exactly the fields",
        ),
        (
            FrameType.HELLO,
            packed({"cluster": "c", "member": ALICE.to_wire(), "nonce": NONCE, "protocol": 256}),
            "field 'protocol' must be an integer in [0, 255]",
        ),
        (
            FrameType.HELLO,
            packed({"cluster": "c", "member": ALICE.to_wire(), "nonce": "x" * 16, "protocol": 1}),
            "field 'nonce' must be 16 bytes",
        ),
    ],
)
def test_malformed_bodies_are_refused(frame_type: int, body: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"^{re.escape(message)}"):
        decode_message(frame_type, body)


def test_an_unexpected_schema_error_is_a_remote_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cls: type[Ack], body: Mapping[str, Any]) -> Ack:
        raise TypeError("unexpected")

    monkeypatch.setattr(messages.Ack, "from_body", classmethod(broken))
    with pytest.raises(RemoteProtocolError, match=r"^malformed Ack: unexpected$") as info:
        decode_message(FrameType.ACK, packed({"id": 1, "ok": True, "error": ""}))
    assert isinstance(info.value.__cause__, TypeError)


# -- BATCH: several messages of an established connection in one frame -----------------------

BATCHABLE = [
    Data(7, SendMode.SYNC, "delta", {"k": [1, b"2", None]}),
    Ack(8, more=(9, 10)),
    Heartbeat((ALICE,)),
    Data(11, SendMode.ASYNC, "access", {"id": "s1"}),
    Leave(),
]


def test_a_batch_round_trips_in_order() -> None:
    body = batch_body(encode_message(message) for message in BATCHABLE)
    assert decode_batch(body) == BATCHABLE


def test_only_the_messages_of_an_established_connection_are_batched() -> None:
    with pytest.raises(LocalProtocolError, match=r"^a HELLO message cannot go in a batch$"):
        batch_body([encode_message(Hello("prod", ALICE, NONCE)), encode_message(Leave())])


LEAVE_BODY = encode_message(Leave())[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "BATCH body must hold pairs of a frame type and a message"),
        (packed(FrameType.LEAVE), "BATCH body must hold pairs of a frame type and a message"),
        (packed(FrameType.LEAVE) + LEAVE_BODY + packed(FrameType.DATA), "BATCH body must hold pairs"),
        (packed(FrameType.ACK) + packed({"id": 1, "ok": True, "error": ""})[:-2], "BATCH body ends inside a message"),
        (packed(FrameType.HELLO) + LEAVE_BODY, "frame type 1 cannot be in a batch"),
        (packed(FrameType.BATCH) + LEAVE_BODY, "frame type 8 cannot be in a batch"),
        (packed("6") + LEAVE_BODY, "frame type '6' cannot be in a batch"),
        (packed(True) + LEAVE_BODY, "frame type True cannot be in a batch"),
        (packed(FrameType.LEAVE) + packed([]), "Leave body must be a map"),
        (packed(FrameType.ACK) + packed({"id": -1, "ok": True, "error": "", "more": []}), "field 'msg_id' must be"),
        (b"\x05\x80\x81", "BATCH body ends inside a message"),  # a map header with no entry after it
        (b"\x05\x80\x93\x06\x80", "BATCH body ends inside a message"),  # an array short of one item
        ((packed(FrameType.LEAVE) + LEAVE_BODY) * 4097, "a BATCH holds at most 4096 messages"),
        (packed(FrameType.LEAVE) + LEAVE_BODY + b"\xc1", "BATCH body is not valid msgpack: "),
        (packed(FrameType.LEAVE) + b"\xd4\x01x", "msgpack extension type 1 is not allowed in peer messages"),
    ],
)
def test_malformed_batches_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"^{re.escape(message)}"):
        decode_batch(body)
