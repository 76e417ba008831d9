"""What a member knows of each copy it holds, and how replicated writes land in a copy.

Split from :mod:`.replication`, which decides *what* a message means; this module is
*how* a value, a removal or another copy's contents enter a held session: per key, the
write with the newer stamp wins; a key a request here wrote and has not released yet
is left alone (its stamp will be newer); a local reader's snapshot follows, so the
request does not see a change it did not make; listeners hear of it when the member
notifies on replication.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .listeners import fire
from .rotations import Stamp
from .session import _MISSING, Session
from .store import SessionStore

__all__ = ["ZERO", "CopyWriter", "Meta", "stamp_of"]

ZERO: Stamp = (0, "")


def stamp_of(raw: list[Any]) -> Stamp:
    """A stamp as msgpack carries it (a list), as the tuple it is compared as."""
    return (raw[0], raw[1])


@dataclass(slots=True)
class Meta:
    """The stamps of one session as held here: per key, its owner's and its idle timeout's."""

    stamps: dict[str, Stamp] = field(default_factory=dict)  # per key, removed keys included
    owner: str = ""
    owner_stamp: Stamp = ZERO
    mii_stamp: Stamp = ZERO
    idle: float = 0.0  # the session's own idle timeout as last replicated (0: none seen; inf: none)
    last_notice: float = float("-inf")
    held: bool = True  # False: stamps of removals for a session not here yet, kept until ``until``
    partial: bool = False  # the copy was made of a delta alone; the whole session was asked for
    until: float = float("inf")


class CopyWriter:
    """Writes replicated values into held sessions (the stamp comparison is the caller's)."""

    def __init__(self, store: SessionStore, notify: bool) -> None:
        self.store = store
        self.notify = notify

    def set(self, session: Session, key: str, value: Any, encoded: bytes | None) -> None:
        if session._delta is not None and key in session._delta:
            return  # a request here wrote it and has not released yet: its newer stamp will win
        if self._changed_in_place(session, key):
            return  # the same, for a change a request made in place (found now, not at release)
        old = dict.get(session, key, _MISSING)
        dict.__setitem__(session, key, value)
        if session._read is not None and key in session._read:
            # A local reader's snapshot follows, so no false change.
            session._read[key] = encoded if encoded is not None else self.store.serializer.dumps(value)
        if self.notify and self.store.listeners:
            if old is _MISSING:
                fire(self.store.listeners, "attribute_added", session, key, value)
            else:
                fire(self.store.listeners, "attribute_replaced", session, key, old, value)

    def remove(self, session: Session, key: str) -> None:
        if session._delta is not None and key in session._delta:
            return  # a pending local write of this key will win
        if self._changed_in_place(session, key):
            return
        old = dict.pop(session, key, _MISSING)
        if session._read is not None:
            session._read.pop(key, None)
        if old is not _MISSING and self.notify and self.store.listeners:
            fire(self.store.listeners, "attribute_removed", session, key, old)

    def _changed_in_place(self, session: Session, key: str) -> bool:
        """A request holding ``session`` read ``key`` and has changed the value in place since:
        it becomes the request's pending write (what its release would have found), so a
        replicated value does not replace it and its snapshot, and the change is not lost."""
        read, delta = session._read, session._delta
        if not session._holders or read is None or delta is None or key not in read:
            return False
        value = dict.get(session, key, _MISSING)
        if value is _MISSING:
            return False
        try:
            after = self.store.serializer.dumps(value)
        except TypeError:
            return False  # unencodable: the release reports it, and the replicated value is taken
        if after == read[key]:
            return False
        delta[key] = read[key] = after
        return True

    def take(
        self,
        session: Session,
        meta: Meta,
        values: Mapping[str, Any],
        stamps: Mapping[str, list[Any]],
        *,
        created: bool,
    ) -> bool:
        """A whole copy's values and removals (``stamps``: of each key written or removed), key
        by key: the newer write or removal wins. A new (``created``) or partial copy also takes
        a value whose write it already knew of (same stamp) when it lacks it: it never had it,
        or lost it with a copy that expired here. True when it took any key."""
        fresh = created or meta.partial
        took = False
        for key, value in values.items():
            raw = stamps.get(key)
            stamp = ZERO if raw is None else stamp_of(raw)
            known = meta.stamps.get(key, ZERO)
            if stamp > known or (fresh and stamp == known and (created or key not in session)):
                meta.stamps[key] = stamp
                self.set(session, key, value, None)
                took = True
        for key, raw in stamps.items():
            stamp = stamp_of(raw)
            if key not in values and stamp > meta.stamps.get(key, ZERO):
                meta.stamps[key] = stamp
                self.remove(session, key)
                took = True
        return took

    def merge(self, source: Session, source_meta: Meta, target: Session, meta: Meta) -> None:
        """Merge ``source`` (a copy going away) into ``target``: per key, the newer write or removal;
        a key neither side stamped is kept if only ``source`` has it."""
        dumps = self.store.serializer.dumps
        for key in sorted({*source_meta.stamps, *dict.keys(source)}):
            stamp = source_meta.stamps.get(key, ZERO)
            value = dict.get(source, key, _MISSING)
            if stamp > meta.stamps.get(key, ZERO):
                meta.stamps[key] = stamp
                if value is _MISSING:
                    self.remove(target, key)
                else:
                    self.set(target, key, value, dumps(value))
            elif value is not _MISSING and key not in target and key not in meta.stamps:
                self.set(target, key, value, dumps(value))
        if source_meta.owner_stamp > meta.owner_stamp:
            meta.owner, meta.owner_stamp = source_meta.owner, source_meta.owner_stamp
        if source_meta.mii_stamp > meta.mii_stamp:
            meta.mii_stamp = source_meta.mii_stamp
            target._max_inactive_interval = source._max_inactive_interval
