"""The replication payloads and their schemas (what :mod:`.replication` sends and accepts).

Payloads are plain msgpack data from authenticated peers, and still never trusted:
:func:`check` validates every field (types, stamps, non-negative finite durations)
before anything is applied. Split from the manager so that the state machine and the
description of its messages each stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import RemoteProtocolError

__all__ = [
    "ACCESS",
    "DELTA",
    "MAX_IDS",
    "MISSING",
    "PLACEMENT",
    "PLACEMENTS",
    "SESSIONS",
    "WANT",
    "check",
    "check_delta",
    "check_entry",
    "check_packed",
    "check_placements",
    "check_want",
]

MAX_IDS = 1000  # ids in one on-demand request


_STAMP = "stamp"
DELTA = {
    "id": str,
    "prev": (str, type(None)),
    "owner": str,
    "stamp": _STAMP,
    "sets": "sets",
    "removes": "keys",
    "created": bool,
    "destroyed": bool,
    "expired": bool,
    "mii": "seconds?",
    "age": "seconds",
}
ACCESS = {"id": str, "owner": str, "stamp": _STAMP}
SESSIONS = {"sessions": list, "last": bool, "dead": "dead", "aliases": "aliases"}
# A transferred session is ``[id, idle, age, mii, packed]``: what expiry needs in the
# clear, everything else in ``packed``, which a joining member keeps as it is until the
# session is used (see :class:`.store.Dormant`). ``packed`` is msgpack of
# ``[owner, owner_stamp, mii_stamp, values, stamps, partial]``: ``values`` the serializer's
# encoding of the attribute dict, ``stamps`` the stamp of every key written or removed,
# ``partial`` whether the sender's copy was made of a delta alone (it is only part of the session).
# ``aliases``: every rotation edge the sender knows, ``[old id, new id, stamp, seconds left]``
# (the stamp of the delta that rotated it), so the receiver picks the same id of each family
# (:mod:`.rotations`); ``dead``: the ids of ended sessions, ``[id, seconds left]``. Seconds left:
# how much longer the sender remembers it, so that passing it on never extends its life.
WANT = {"ids": (list, type(None))}
PLACEMENT = {"id": str, "owner": str, "stamp": _STAMP, "holders": "keys", "keep": bool, "replaces": str}
# Many placements at once (a rebalance): each element is a PLACEMENT, checked as one.
PLACEMENTS = {"placements": list}
# A backup that got a delta or notice for a session it holds no copy of (its full copy was
# lost to a failed send) asks the sender, which answers if it counts it as a backup.
MISSING = {"ids": "ids"}


def check(payload: Any, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate a replication payload field by field (peer data is never trusted)."""
    if not isinstance(payload, dict) or set(payload) != set(schema):
        raise RemoteProtocolError(f"replication payload must have exactly the fields {sorted(schema)}")
    for name, kind in schema.items():
        value = payload[name]
        if kind == _STAMP:
            ok = _is_stamp(value)
        elif kind == "sets":
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, bytes) for k, v in value.items())
        elif kind == "keys":
            ok = isinstance(value, list) and all(isinstance(k, str) for k in value)
        elif kind == "ids":
            ok = isinstance(value, list) and len(value) <= MAX_IDS and all(isinstance(k, str) for k in value)
        elif kind in ("seconds", "seconds?"):
            ok = (value is None and kind == "seconds?") or _is_seconds(value)
        elif kind == "aliases":
            ok = isinstance(value, list) and all(_is_edge(edge) for edge in value)
        elif kind == "dead":
            ok = isinstance(value, list) and all(_is_ended(item) for item in value)
        else:
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok:
            raise RemoteProtocolError(f"replication field {name!r} is malformed")
    if schema is WANT and payload["ids"] is not None:
        if len(payload["ids"]) > MAX_IDS or not all(isinstance(i, str) for i in payload["ids"]):
            raise RemoteProtocolError("replication field 'ids' is malformed")
    return payload


_DELTA_FIELDS = frozenset(DELTA)


def check_delta(payload: Any) -> Mapping[str, Any]:
    """:func:`check` of a DELTA, the message of every write: the same rules written out,
    several times cheaper than walking the schema. Anything it does not accept goes to
    :func:`check`, which names what is wrong (or accepts what this reads more strictly)."""
    if (
        type(payload) is dict
        and payload.keys() == _DELTA_FIELDS
        and type(payload["id"]) is str
        and (payload["prev"] is None or type(payload["prev"]) is str)
        and type(payload["owner"]) is str
        and _is_stamp(payload["stamp"])
        and type(payload["sets"]) is dict
        and all(type(k) is str and type(v) is bytes for k, v in payload["sets"].items())
        and type(payload["removes"]) is list
        and all(type(k) is str for k in payload["removes"])
        and type(payload["created"]) is bool
        and type(payload["destroyed"]) is bool
        and type(payload["expired"]) is bool
        and (payload["mii"] is None or _is_seconds(payload["mii"]))
        and _is_seconds(payload["age"])
    ):
        return payload
    return check(payload, DELTA)


def check_entry(entry: Any) -> list[Any]:
    """Validate the clear part of a transferred session (the packed part waits for :func:`check_packed`)."""
    if not (
        type(entry) is list
        and len(entry) == 5
        and type(entry[0]) is str
        and _is_seconds(entry[1])
        and _is_seconds(entry[2])
        and (entry[3] is None or _is_seconds(entry[3]))
        and type(entry[4]) is bytes
    ):
        raise RemoteProtocolError("a transferred session entry is malformed")
    return entry


def check_packed(packed: Any) -> list[Any]:
    """Validate the unpacked part of a transferred session."""
    if not (
        type(packed) is list
        and len(packed) == 6
        and type(packed[0]) is str
        and _is_stamp(packed[1])
        and _is_stamp(packed[2])
        and type(packed[3]) is bytes
        and type(packed[4]) is dict
        and all(type(k) is str and _is_stamp(v) for k, v in packed[4].items())
        and type(packed[5]) is bool
    ):
        raise RemoteProtocolError("a transferred session is malformed")
    return packed


def _is_seconds(value: Any) -> bool:
    # >= 0 (inf: "no limit" for mii); NaN fails the comparison, and would never expire.
    return isinstance(value, float | int) and not isinstance(value, bool) and value >= 0


def _is_edge(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 4
        and type(value[0]) is str
        and type(value[1]) is str
        and _is_stamp(value[2])
        and _is_seconds(value[3])
    )


def _is_ended(value: Any) -> bool:
    return type(value) is list and len(value) == 2 and type(value[0]) is str and _is_seconds(value[1])


def _is_stamp(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and value[0] >= 0
        and isinstance(value[1], str)
    )


def check_placements(payload: Any) -> list[Mapping[str, Any]]:
    """Validate a ``placements`` batch: every placement in it, before any is applied."""
    return [check(body, PLACEMENT) for body in check(payload, PLACEMENTS)["placements"]]


def check_want(payload: Any) -> Mapping[str, Any]:
    """Validate a ``want`` request (the node reads it before streaming a transfer)."""
    return check(payload, WANT)
