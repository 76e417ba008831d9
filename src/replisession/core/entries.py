"""A transfer entry: a held session packed for another member, and a packed one read back.

Split from :mod:`.replication`, which decides when entries travel and how one is
applied to a held copy; the format itself is documented in :mod:`.payloads`. A copy
held packed (:class:`.store.Dormant`) is passed on as it is, never unpacked to be sent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgpack

from ..errors import RemoteProtocolError
from .copies import Meta, stamp_of
from .payloads import check_packed
from .rotations import Stamp
from .store import SessionStore

__all__ = ["Unpacked", "pack_entries", "unpack_entry"]

log = logging.getLogger("replisession.replication")


def pack_entries(
    store: SessionStore,
    session_ids: Iterable[str],
    now: float,
    *,
    meta_of: Callable[[str], Meta | None],
    resolve: Callable[[str], str | None],
    local: str,
) -> list[list[Any]]:
    """The entries of these sessions as held here (``resolve``: the id a rotated one is held
    under, None for one a request here is rotating; ``meta_of``: its stamps; ``local``: this
    member's id, the owner of a session with no stamps yet). A session still in the request
    that creates it is left out, and so is one asked for under an id such a request is leaving."""
    entries: list[list[Any]] = []
    dumps = store.serializer.packer()
    pack = msgpack.Packer().pack  # stamps are tuples; msgpack writes them as arrays
    for requested in session_ids:
        session = store.live(requested)
        session_id = requested
        if session is None:  # dormant, or rotated meanwhile
            resolved = resolve(requested)
            if resolved is None:
                continue
            session_id = resolved
            copy = store.dormant(session_id)
            if copy is not None:
                idle, age = max(0.0, now - copy.last_accessed), max(0.0, now - copy.created_at)
                entries.append([session_id, idle, age, copy.data[0], copy.data[1]])
                continue
            session = store.live(session_id)
        if session is None or session.last_accessed is None or session._was_created:
            # Still in the request that creates it: its creation delta reaches every
            # member (the joiner included) when that request ends, or nothing does if
            # the request empties it; a copy taken now would outlive either.
            continue
        meta = meta_of(session_id) or Meta(owner=local)
        try:
            encoded = dumps(dict(dict.items(session)))  # not dict(session): that reads as a request would
        except TypeError as exc:  # changed in place into something unencodable
            log.error("session %s cannot be transferred: %s", session_id, exc)
            continue
        packed = pack([meta.owner or local, meta.owner_stamp, meta.mii_stamp, encoded, meta.stamps, meta.partial])
        idle = now - session.last_accessed
        age = now - session.created_at if session.created_at is not None else 0.0
        # The timeout in force, as a delta carries it (inf: none): None would read as
        # "unchanged", and a copy that missed a reset to the default would keep the old one.
        mii = session.max_inactive_interval
        entries.append([session_id, max(0.0, idle), max(0.0, age), math.inf if mii is None else mii, packed])
    return entries


class Unpacked(NamedTuple):
    """The packed part of an entry, read and checked."""

    owner: str
    owner_stamp: Stamp
    mii_stamp: Stamp
    values: dict[str, Any]
    stamps: dict[str, list[Any]]
    partial: bool


def unpack_entry(packed: bytes, loads: Callable[[bytes], Any]) -> Unpacked:
    """Read an entry's packed part (``loads``: the attributes' decoder); RemoteProtocolError,
    ValueError, TypeError or msgpack's errors when it cannot be read."""
    owner, owner_stamp, mii_stamp, encoded, stamps, partial = check_packed(
        msgpack.unpackb(packed, raw=False, strict_map_key=True)
    )
    values = loads(encoded)
    if type(values) is not dict or not all(type(key) is str for key in values):
        raise RemoteProtocolError("the attributes of a transferred session are not a map of names")
    return Unpacked(owner, stamp_of(owner_stamp), stamp_of(mii_stamp), values, stamps, partial)
