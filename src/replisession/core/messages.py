"""Peer messages and their strict msgpack schemas.

They live in core/ because the membership and replication state machines speak
them; wire/ frames and authenticates their bytes.

Every message is a frozen dataclass that validates itself. On the wire a message
is its :class:`FrameType` (in the frame header) plus a msgpack map body. A body is
unpacked as plain msgpack only (no extension types, size limits from the frame
decoder) and then checked field by field: a missing, extra or mistyped field is a
:class:`~replisession.errors.RemoteProtocolError`, never an object we build blindly
(Tomcat deserialises whatever arrives; weak point 6).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from ..errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BATCH_BYTES",
    "MAX_BATCH",
    "PROTOCOL_VERSION",
    "Ack",
    "Data",
    "FrameType",
    "Heartbeat",
    "Hello",
    "Leave",
    "MemberInfo",
    "Message",
    "Refuse",
    "SendMode",
    "Welcome",
    "batch_body",
    "decode_batch",
    "decode_message",
    "encode_message",
]

PROTOCOL_VERSION = 3  # 2: BATCH frames, an ACK for several DATA, transfers with rotation edges;
# 3: the ended ids and rotation edges a transfer carries say how long they are still remembered
_MAX_MEMBERS = 4096  # a gossip list longer than this is an attack, not a cluster
_MAX_TEXT = 1024


class FrameType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    HEARTBEAT = 4
    LEAVE = 5
    DATA = 6
    ACK = 7
    BATCH = 8  # several HEARTBEAT, LEAVE, DATA or ACK messages in one frame (see batch_body)


class SendMode(enum.IntEnum):
    """Tomcat's channelSendOptions: when a send counts as done."""

    ASYNC = 0  # queued: returns at once
    ACK = 1  # each target has received it (Tomcat USE_ACK)
    SYNC = 2  # each target has applied it (Tomcat USE_ACK | SYNC_ACK)


def _text(value: Any, field: str, *, optional: bool = False, limit: int = _MAX_TEXT) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > limit:
        raise RemoteProtocolError(f"field {field!r} must be a string of at most {limit} characters")


def _int(value: Any, field: str, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise RemoteProtocolError(f"field {field!r} must be an integer in [{low}, {high}]")


def _bytes(value: Any, field: str, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise RemoteProtocolError(f"field {field!r} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member's identity: its route, its peer-channel address and a per-process
    incarnation, so a restarted member (same route and address) is a new member."""

    route: str | None
    host: str
    port: int
    incarnation: str  # 32 hex characters, random per process start
    #: The member's identity as members key it: its incarnation. A plain attribute, not a
    #: property: it is read dozens of times per replicated write.
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _text(self.route, "route", optional=True, limit=64)
        _text(self.host, "host", limit=255)
        _int(self.port, "port", 1, 65535)
        if (
            not isinstance(self.incarnation, str)
            or len(self.incarnation) != 32
            or any(c not in "0123456789abcdef" for c in self.incarnation)
        ):
            raise RemoteProtocolError("field 'incarnation' must be 32 lower-case hex characters")
        object.__setattr__(self, "id", self.incarnation)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def to_wire(self) -> list[Any]:
        return [self.route, self.host, self.port, self.incarnation]

    @classmethod
    def from_wire(cls, value: Any) -> MemberInfo:
        if not isinstance(value, list) or len(value) != 4:
            raise RemoteProtocolError("a member must be [route, host, port, incarnation]")
        return cls(*value)

    def __str__(self) -> str:
        return f"{self.route or '-'}@{self.host}:{self.port}/{self.incarnation[:8]}"


class Message:
    """Base of every peer message."""

    __slots__ = ()
    frame_type: ClassVar[FrameType]

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Message:
        raise NotImplementedError


def _fields(body: Mapping[str, Any], names: frozenset[str], kind: str) -> None:
    if len(body) != len(names) or not names.issuperset(body):
        raise RemoteProtocolError(f"{kind} must have exactly the fields {sorted(names)}, got {sorted(body)}")


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First frame of a connection, from the member that dialled."""

    frame_type: ClassVar[FrameType] = FrameType.HELLO
    cluster: str
    member: MemberInfo
    nonce: bytes
    protocol: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _text(self.cluster, "cluster", limit=128)
        _bytes(self.nonce, "nonce", 16)
        _int(self.protocol, "protocol", 0, 255)

    def body(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "member": self.member.to_wire(),
            "nonce": self.nonce,
            "protocol": self.protocol,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Hello:
        _fields(body, frozenset({"cluster", "member", "nonce", "protocol"}), "HELLO")
        return cls(body["cluster"], MemberInfo.from_wire(body["member"]), body["nonce"], body["protocol"])


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """The answer to a HELLO that was authenticated and is of our cluster."""

    frame_type: ClassVar[FrameType] = FrameType.WELCOME
    cluster: str
    member: MemberInfo
    nonce: bytes

    def __post_init__(self) -> None:
        _text(self.cluster, "cluster", limit=128)
        _bytes(self.nonce, "nonce", 16)

    def body(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "member": self.member.to_wire(), "nonce": self.nonce}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Welcome:
        _fields(body, frozenset({"cluster", "member", "nonce"}), "WELCOME")
        return cls(body["cluster"], MemberInfo.from_wire(body["member"]), body["nonce"])


@dataclass(frozen=True, slots=True)
class Refuse(Message):
    """Why a connection is refused (sent unauthenticated, during the handshake only)."""

    frame_type: ClassVar[FrameType] = FrameType.REFUSE
    reason: str

    def __post_init__(self) -> None:
        _text(self.reason, "reason", limit=256)

    def body(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Refuse:
        _fields(body, frozenset({"reason"}), "REFUSE")
        return cls(body["reason"])


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """I am alive, and these are the live members I know of (gossip)."""

    frame_type: ClassVar[FrameType] = FrameType.HEARTBEAT
    members: tuple[MemberInfo, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple) or len(self.members) > _MAX_MEMBERS:
            raise RemoteProtocolError(f"field 'members' must list at most {_MAX_MEMBERS} members")

    def body(self) -> dict[str, Any]:
        return {"members": [m.to_wire() for m in self.members]}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Heartbeat:
        _fields(body, frozenset({"members"}), "HEARTBEAT")
        members = body["members"]
        if not isinstance(members, list) or len(members) > _MAX_MEMBERS:
            raise RemoteProtocolError(f"field 'members' must list at most {_MAX_MEMBERS} members")
        return cls(tuple(MemberInfo.from_wire(m) for m in members))


@dataclass(frozen=True, slots=True)
class Leave(Message):
    """The sender is shutting down gracefully: remove it at once (Tomcat's BABY-ALEX)."""

    frame_type: ClassVar[FrameType] = FrameType.LEAVE

    def body(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Leave:
        _fields(body, frozenset(), "LEAVE")
        return cls()


_DATA_FIELDS = frozenset({"id", "mode", "kind", "payload"})
_SEND_MODES = tuple(SendMode)  # by value: cheaper than calling the enum on the receive path


@dataclass(frozen=True, slots=True)
class Data(Message):
    """An application message (replication traffic), with the acknowledgement it wants."""

    frame_type: ClassVar[FrameType] = FrameType.DATA
    msg_id: int
    mode: SendMode
    kind: str
    payload: Any

    def __post_init__(self) -> None:
        _int(self.msg_id, "msg_id", 0, 2**63 - 1)
        if not isinstance(self.mode, SendMode):
            raise RemoteProtocolError("field 'mode' must be a send mode")
        _text(self.kind, "kind", limit=64)

    def body(self) -> dict[str, Any]:
        return {"id": self.msg_id, "mode": int(self.mode), "kind": self.kind, "payload": self.payload}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Data:
        _fields(body, _DATA_FIELDS, "DATA")
        mode = body["mode"]
        _int(mode, "mode", 0, 2)
        return cls(body["id"], _SEND_MODES[mode], body["kind"], body["payload"])


MAX_ACKED = 4096  # DATA acknowledged by one ACK: a read of that many frames is already large


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Answer to a DATA sent in ``ack`` (on receipt) or ``sync`` (after it was applied) mode.

    ``more``: further DATA acknowledged as handled without error. A member answers every
    DATA of one read of its socket with one ACK: under load the deltas of many requests
    arrive in one read, and one frame (one encoding, one MAC, one wake-up of the sender)
    answers them all.
    """

    frame_type: ClassVar[FrameType] = FrameType.ACK
    msg_id: int
    ok: bool = True
    error: str = ""
    more: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _int(self.msg_id, "msg_id", 0, 2**63 - 1)
        if type(self.ok) is not bool:
            raise RemoteProtocolError("field 'ok' must be a boolean")
        _text(self.error, "error", limit=256)
        more = self.more
        if type(more) is not tuple or len(more) > MAX_ACKED - 1:
            raise RemoteProtocolError(f"field 'more' must list at most {MAX_ACKED - 1} message ids")
        # In C, not one call per id: an ACK under load lists hundreds.
        if more and (set(map(type, more)) != {int} or min(more) < 0 or max(more) > 2**63 - 1):
            raise RemoteProtocolError(f"field 'more' must be an integer in [0, {2**63 - 1}]")

    def body(self) -> dict[str, Any]:
        return {"id": self.msg_id, "ok": self.ok, "error": self.error, "more": list(self.more)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Ack:
        _fields(body, _ACK_FIELDS, "ACK")
        more = body["more"]
        if not isinstance(more, list):
            raise RemoteProtocolError("field 'more' must be a list of message ids")
        return cls(body["id"], body["ok"], body["error"], tuple(more))


_ACK_FIELDS = frozenset({"id", "ok", "error", "more"})


_BY_TYPE: dict[int, type[Message]] = {
    cls.frame_type: cls for cls in (Hello, Welcome, Refuse, Heartbeat, Leave, Data, Ack)
}


def _no_extensions(code: int, data: bytes) -> Any:
    raise RemoteProtocolError(f"msgpack extension type {code} is not allowed in peer messages")


def encode_message(message: Message) -> tuple[FrameType, bytes]:
    """The frame type and msgpack body of ``message``."""
    try:
        body: bytes = msgpack.packb(message.body(), use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {type(message).__name__}: {exc}") from exc
    return message.frame_type, body


MAX_BATCH = 4096  # messages in one BATCH frame
BATCH_BYTES = 64 * 1024  # a BATCH body's size: no more than the smallest maximum frame size a member may set

#: What a BATCH frame may carry: the messages of an established connection, never a batch.
_BATCHED: dict[int, type[Message]] = {cls.frame_type: cls for cls in (Heartbeat, Leave, Data, Ack)}


def batch_body(encoded: Iterable[tuple[FrameType, bytes]]) -> bytes:
    """The body of a BATCH frame: each message's frame type (a one-byte msgpack integer)
    followed by its body, as ``encode_message`` made them, back to back.

    The messages that one turn of the event loop sends to one peer (the deltas of every
    request that ended in it, under load) then take one frame: one MAC to compute and
    check, one frame to decode, instead of one per message.
    """
    parts = []
    for frame_type, body in encoded:
        if frame_type not in _BATCHED:
            raise LocalProtocolError(f"a {FrameType(frame_type).name} message cannot go in a batch")
        parts.append(_TYPE_BYTES[frame_type])
        parts.append(body)
    return b"".join(parts)


_TYPE_BYTES = {frame_type: bytes([frame_type]) for frame_type in _BATCHED}  # positive fixints


def decode_batch(body: bytes) -> list[Message]:
    """The messages of a BATCH body, each validated as :func:`decode_message` validates one."""
    unpacker = msgpack.Unpacker(
        raw=False, ext_hook=_no_extensions, strict_map_key=True, use_list=True, max_buffer_size=max(len(body), 1)
    )
    unpacker.feed(body)
    items: list[Any] = []
    end = 0  # where the last whole item ended (tell() also counts a partly read header)
    try:
        for item in unpacker:
            items.append(item)
            end = unpacker.tell()
            if len(items) > 2 * MAX_BATCH:  # a compressed frame of tiny messages must not become millions
                raise RemoteProtocolError(f"a BATCH holds at most {MAX_BATCH} messages")
    except RemoteProtocolError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage
        raise RemoteProtocolError(f"BATCH body is not valid msgpack: {exc}") from exc
    if end != len(body):
        raise RemoteProtocolError("BATCH body ends inside a message")
    if not items or len(items) % 2:
        raise RemoteProtocolError("BATCH body must hold pairs of a frame type and a message")
    messages = []
    for frame_type, fields in zip(items[::2], items[1::2], strict=True):
        cls = _BATCHED.get(frame_type) if type(frame_type) is int else None
        if cls is None:
            raise RemoteProtocolError(f"frame type {frame_type!r} cannot be in a batch")
        messages.append(_from_fields(cls, fields))
    return messages


def decode_message(frame_type: int, body: bytes) -> Message:
    """Parse and validate a message body; anything malformed raises RemoteProtocolError."""
    cls = _BY_TYPE.get(frame_type)
    if cls is None:
        raise RemoteProtocolError(f"unknown frame type {frame_type}")
    try:
        fields = msgpack.unpackb(body, raw=False, ext_hook=_no_extensions, strict_map_key=True, use_list=True)
    except RemoteProtocolError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage
        raise RemoteProtocolError(f"{cls.__name__} body is not valid msgpack: {exc}") from exc
    return _from_fields(cls, fields)


def _from_fields(cls: type[Message], fields: Any) -> Message:
    if not isinstance(fields, dict):
        raise RemoteProtocolError(f"{cls.__name__} body must be a map")
    try:
        return cls.from_body(fields)
    except RemoteProtocolError:
        raise
    except (TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"malformed {cls.__name__}: {exc}") from exc
