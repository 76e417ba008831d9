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

__all__ = ["ACCESS", "DELTA", "ENTRY", "MAX_IDS", "SESSIONS", "WANT", "check", "check_want"]

MAX_IDS = 1000  # ids in one on-demand request


_STAMP = "stamp"
DELTA = {
    "id": str,
    "prev": (str, type(None)),
    "owner": str,
    "stamp": _STAMP,
    "sets": "sets",
    "removes": "keys",
    "destroyed": bool,
    "expired": bool,
    "mii": "seconds?",
    "age": "seconds",
}
ACCESS = {"id": str, "owner": str, "stamp": _STAMP}
SESSIONS = {"sessions": list, "last": bool, "dead": "keys", "aliases": "aliases"}
ENTRY = {
    "id": str,
    "owner": str,
    "owner_stamp": _STAMP,
    "idle": "seconds",
    "age": "seconds",
    "mii": "seconds?",
    "mii_stamp": _STAMP,
    "attrs": "attrs",
    "removed": "removed",
}
WANT = {"ids": (list, type(None))}


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
        elif kind == "attrs":
            ok = isinstance(value, dict) and all(
                isinstance(k, str)
                and isinstance(v, list)
                and len(v) == 2
                and isinstance(v[0], bytes)
                and _is_stamp(v[1])
                for k, v in value.items()
            )
        elif kind in ("seconds", "seconds?"):
            # Finite and >= 0 (inf: "no limit" for mii); NaN would never expire.
            ok = (value is None and kind == "seconds?") or (
                isinstance(value, float | int) and not isinstance(value, bool) and value >= 0
            )
        elif kind == "aliases":
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        elif kind == "removed":
            ok = isinstance(value, dict) and all(isinstance(k, str) and _is_stamp(v) for k, v in value.items())
        else:
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok:
            raise RemoteProtocolError(f"replication field {name!r} is malformed")
    if schema is WANT and payload["ids"] is not None:
        if len(payload["ids"]) > MAX_IDS or not all(isinstance(i, str) for i in payload["ids"]):
            raise RemoteProtocolError("replication field 'ids' is malformed")
    return payload


def _is_stamp(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and value[0] >= 0
        and isinstance(value[1], str)
    )


def check_want(payload: Any) -> Mapping[str, Any]:
    """Validate a ``want`` request (the node reads it before streaming a transfer)."""
    return check(payload, WANT)
