"""Keep-alive: a session a request is using does not expire on any member.

Split from :mod:`.replication` (the manager mixes it in). Every member expires its own
copy by its own idle time, and only the owner (the member that served the session
last) announces an expiry. A request that outlasts the idle timeout on another member
(an upload, a long poll, a balancer that moved the user) would have the session ended
under it; so the node's timer sends, for each session a request holds, an ``access``
notice at most every throttle, and one as the request begins when the owner's copy may
be near its deadline. The notice touches copies and moves no ownership.
"""

from __future__ import annotations

from collections.abc import Iterable

from .copies import Meta
from .messages import MemberInfo
from .outgoing import Outgoing
from .session import Session

__all__ = ["KeepAlive"]


class KeepAlive:
    """The keep-alive notices of a replication manager (which provides these attributes)."""

    local: MemberInfo
    access_throttle: float
    _meta: dict[str, Meta]
    _shortest_own: float  # the shortest idle timeout a session here was given (inf: none)

    def keepalive(self, in_use: Iterable[Session], now: float) -> list[Outgoing]:
        """Sessions requests here are using (from the node's timer): a notice for each, at most
        every ``access_throttle`` seconds, so no copy (the owner's included) expires under a
        request that outlasts the idle timeout (an upload, a long poll), as this member's own
        store never expires a session in use. A touch, not a takeover: it names the owner and
        owner stamp known here, so ownership still moves only when a request ends (a request
        that never uses the session must not make its member decide when the session ends)."""
        out = []
        for session in in_use:
            session_id = session.id
            meta = self._meta.get(session_id) if session_id is not None else None
            if session_id is None or meta is None or not meta.owner or session._was_created:
                continue  # not replicated yet: its creating request's delta carries it
            if now - meta.last_notice < self._throttle(session):
                continue
            targets = self._holders_of(session_id)
            if targets is not None and not targets:
                continue
            meta.last_notice = now
            # Under the id the others know: a rotation by the request is not released yet.
            known = session._previous_id or session_id
            body = {"id": known, "owner": meta.owner, "stamp": list(meta.owner_stamp)}
            out.append(Outgoing("access", body, targets, wait=False))
        return out

    def began(self, session: Session, now: float) -> list[Outgoing]:
        """A request here begins with a session another member owns (the balancer moved the
        user), idle for a throttle or more: the keep-alive's first notice now rather than at the
        timer's next tick, which may come after the owner's deadline. (Used more recently, the
        owner's copy was too: every change and notice reaches it, and its deadline is further
        than the timer's next notices.)"""
        meta = self._meta.get(session.id) if session.id is not None else None
        if meta is None or not meta.owner or meta.owner == self.local.id:
            return []
        if session.last_accessed is not None and now - session.last_accessed < self._throttle(session):
            return []
        return self.keepalive((session,), now)

    @property
    def keepalive_interval(self) -> float:
        """How often the node's timer must call :meth:`keepalive`: every throttle, and four
        times per the shortest idle timeout of its own a session here was given."""
        return min(self.access_throttle, self._shortest_own / 4)

    def _throttle(self, session: Session) -> float:
        own = session._max_inactive_interval
        return min(self.access_throttle, own / 4) if own else self.access_throttle

    def _own_timeout(self, seconds: float) -> float:
        """Note a session's own idle timeout (for :attr:`keepalive_interval`); returns it."""
        if 0 < seconds < self._shortest_own:
            self._shortest_own = seconds
        return seconds

    def _holders_of(self, session_id: str) -> tuple[MemberInfo, ...] | None:
        """The other members with a copy of the session: None for every member."""
        return None
