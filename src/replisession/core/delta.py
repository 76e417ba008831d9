"""The change set a request leaves behind: Tomcat's DeltaRequest, coalesced per key.

Replication sends these; a single member only produces them when someone listens
(see ``SessionStore.track_changes``), so the request path of a lone member does no
work that only replication needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SessionDelta"]


@dataclass(frozen=True, slots=True)
class SessionDelta:
    """What changed in one session since its last delta.

    ``sets`` maps each written key to its serialized value (the last write wins,
    as with Tomcat's ``recordAllActions=false``); ``removes`` lists keys removed.
    A key is in at most one of the two. ``version`` increases by one per delta of
    a session on the member that produced it (replicas order writes by the
    replication manager's per-key stamps, not by this number).
    ``destroyed`` is set when the session ended (invalidated or emptied); a
    destroyed delta carries no sets. ``max_inactive_interval`` is the session's
    effective idle timeout when it changed (``math.inf`` for none), else None.
    """

    session_id: str
    version: int
    sets: Mapping[str, bytes] = field(default_factory=dict)
    removes: frozenset[str] = frozenset()
    created: bool = False
    destroyed: bool = False
    previous_id: str | None = None
    max_inactive_interval: float | None = None
    expired: bool = False  # with destroyed: it timed out (else it was invalidated)

    def __post_init__(self) -> None:
        if not self.session_id:
            raise ValueError("a delta needs a session id")
        if self.version < 1:
            raise ValueError("delta versions start at 1")
        overlap = self.removes.intersection(self.sets)
        if overlap:
            raise ValueError(f"keys both set and removed in one delta: {sorted(overlap)}")
        if self.destroyed and self.sets:
            raise ValueError("a destroyed session's delta carries no sets")
