"""Ends: how a replication manager keeps ended sessions ended, and tells members that missed one.

Split from :mod:`.replication` (the manager mixes it in). An ended id is buried for a horizon
(:mod:`.ended`), so no late delta brings the session back. A member whose end reached only
some members before it died leaves the session live on the others, whose messages for it
the tombstones would refuse forever; so a member holding the end answers any member that
writes, uses, sends or places the session with the end, and that member drops its copy and
passes the end on once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .copies import Meta
from .ended import Horizon, Tombstones
from .listeners import DestroyReason, fire
from .messages import MemberInfo
from .outgoing import Outgoing
from .rotations import Rotations
from .store import SessionStore

__all__ = ["Ending"]


class Ending:
    """The tombstones of a replication manager (which provides these attributes)."""

    store: SessionStore
    notify: bool
    _meta: dict[str, Meta]
    _tombstones: Tombstones
    _horizon: Horizon
    _rotations: Rotations
    _resolve: Callable[[str], str]
    sessions_message: Callable[..., Outgoing]

    def is_dead(self, session_id: str) -> bool:
        return self._resolve(session_id) in self._tombstones

    def ended(self, now: float) -> tuple[list[list[Any]], list[list[Any]]]:
        """Every ended id and every rotation edge this member remembers, with the seconds
        left: the end of a state transfer, so a member that missed an invalidation drops its
        copy and a joiner picks the same id of each family (every edge with its stamp)."""
        with self.store.lock:
            return self._tombstones.left(now), self._rotations.edges(now)

    def _apply_dead(self, session_id: str, now: float, *, expired: bool = False, left: float | None = None) -> None:
        """The session ended on another member: drop the copy (listeners told) and bury the id
        (for ``left`` seconds when a transfer says how long its sender still remembers it)."""
        own = self._own_idle(session_id)  # before the copy goes (a packed one has no stamps)
        session = self.store.drop(session_id)
        self._bury(session_id, now, left, own)
        if session is not None and self.notify and self.store.listeners:
            reason = DestroyReason.EXPIRED if expired else DestroyReason.INVALIDATED
            session._id = session_id  # readable in the listener, as on the owner
            fire(self.store.listeners, "session_destroyed", session, reason)
            session._id = None

    def _bury(self, session_id: str, now: float, left: float | None = None, own: float | None = None) -> None:
        """Keep ``session_id`` ended. ``own``: the session's own idle timeout, when the caller
        read it before the copy went (else it is looked up here)."""
        self._tombstones.bury(
            session_id, self._horizon.until(self._own_idle(session_id) if own is None else own, now, left)
        )
        self._meta.pop(session_id, None)

    def _own_idle(self, *session_ids: str) -> float:
        """The longest own idle timeout known here of these ids' session: from its stamps, its
        packed copy (which has no stamps) or its live copy; 0.0 when none is known."""
        own = 0.0
        for session_id in session_ids:
            meta = self._meta.get(session_id)
            copy = self.store.dormant(session_id)
            session = self.store.live(session_id)  # a packed copy is read as it is, not unpacked
            for value in (
                meta.idle if meta is not None else None,
                copy.max_inactive_interval if copy is not None else None,
                session._max_inactive_interval if session is not None else None,
            ):
                if value is not None and value < math.inf:
                    own = max(own, value)
        return own

    def _ended_here(self, sender: MemberInfo, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """``sender`` wrote, used or sent a copy of sessions that ended here: it missed the end
        (its sender died mid-send, or a partition cut it off) and is told, or it would serve
        them on, and its writes would be applied nowhere else."""
        dead = self._tombstones.left(now, [self._resolve(i) for i in session_ids])
        return [self.sessions_message([], (sender,), dead=dead)] if dead else []

    def _pass_end(self, sender: MemberInfo, session_ids: list[str], now: float) -> list[Outgoing]:
        """Copies held here of sessions that ``sender`` says ended: the members that hold them
        too may have missed the end as this one did, and are told. Each member passes an end
        on at most once, when it drops its copy (a member that had it ended passes nothing),
        so this stops. Only a member that missed an end (its sender died mid-send, or a partition
        cut it off) gets here."""
        if not session_ids:
            return []
        return [self.sessions_message([], self._others(sender), dead=self._tombstones.left(now, session_ids))]

    def _others(self, sender: MemberInfo) -> tuple[MemberInfo, ...] | None:
        """Every member but this one and ``sender``; None (every member) when not known here."""
        return None
