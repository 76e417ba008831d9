"""What a replication manager remembers of sessions that ended, and for how long.

An ended session's id is a tombstone, so a late delta never brings it back; a rotated id's
edge (:mod:`.rotations`) is kept as long, so the id from before a login opens nothing. Both
live for a *horizon*: two idle timeouts and a notice interval, after which no copy still
valid anywhere can bring the id back. A state transfer passes each on with the seconds it
has left, so passing it on never extends its life.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["LONGEST_REMEMBERED_IDLE", "Horizon", "Tombstones"]

#: The longest idle timeout of a session's own that its ended or rotated id is remembered for
#: (twice, as for the policy's): a week, so one session set to a year cannot pin tombstones.
LONGEST_REMEMBERED_IDLE = 7 * 24 * 3600.0


class Horizon:
    """How long ended and rotated ids are remembered, for a policy's idle timeout
    (``idle``; None: no timeout, remembered as for an hour) and notice interval."""

    def __init__(self, idle: float | None, throttle: float) -> None:
        self.idle = idle or 3600.0
        self.throttle = throttle
        self.shortest = self.of()
        self.longest = self.of(LONGEST_REMEMBERED_IDLE)

    def of(self, own: float = 0.0) -> float:
        """Seconds for a session whose own idle timeout is ``own`` (0.0: none known). It counts
        when it is longer than the policy's, up to ``LONGEST_REMEMBERED_IDLE``."""
        idle = min(own, LONGEST_REMEMBERED_IDLE) if self.idle < own < math.inf else self.idle
        return idle * 2 + self.throttle

    def until(self, own: float, now: float, left: float | None = None) -> float:
        """When to forget: a horizon from ``now``, or what a transfer's sender had ``left``."""
        return now + (self.of(own) if left is None else min(left, self.longest))


class Tombstones:
    """Ended session ids, each with when it may be forgotten."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._until

    def bury(self, session_id: str, until: float) -> None:
        """Remember ``session_id`` until ``until`` at least."""
        self._until[session_id] = max(until, self._until.get(session_id, until))

    def forget(self, now: float) -> None:
        """Drop the ids whose time has come."""
        for session_id in [i for i, until in self._until.items() if until <= now]:
            del self._until[session_id]

    def left(self, now: float, session_ids: Iterable[str] | None = None) -> list[list[Any]]:
        """Every id as ``[id, seconds left]`` (a state transfer carries them); of ``session_ids``,
        those ended."""
        if session_ids is None:
            return [[session_id, max(0.0, until - now)] for session_id, until in self._until.items()]
        until = self._until
        return [[i, max(0.0, until[i] - now)] for i in dict.fromkeys(session_ids) if i in until]
