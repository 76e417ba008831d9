"""Peer messages as the wire sees them (defined in :mod:`replisession.core.messages`)."""

from ..core.messages import (
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
    decode_message,
    encode_message,
)

__all__ = [
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
    "decode_message",
    "encode_message",
]
