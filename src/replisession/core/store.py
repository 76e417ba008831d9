"""The session store of one member: live sessions by id, expiry, limits, deltas.

Sans-IO: every time-dependent call takes ``now`` (seconds on a monotonic clock of
this member; never compared with another machine's clock). The store takes the
lock it is given (the node passes a re-entrant thread lock; the default is
none) and holds it for every change to the set of sessions, including the ones
a session's own methods make (first write, ``rotate_id``, ``invalidate``).

Invariant 2 lives here: the only way to obtain a stored session is :meth:`load`
with an id the store itself issued; an unknown, expired or invalidated id gives
``None`` and the caller starts a fresh session. A new session is not stored at
all until its first write, so requests that never write create nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, TooManySessionsError
from .delta import SessionDelta
from .ids import new_session_id
from .listeners import DestroyReason, SessionListener, fire
from .serializer import SessionSerializer
from .session import Session

__all__ = ["Dormant", "SessionPolicy", "SessionStore"]

log = logging.getLogger("replisession.store")

ChangeSink = Callable[[SessionDelta], None]
_MAX_RETIRED = 65536


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Lifetime and capacity rules shared by every session of a store.

    ``max_inactive_interval``: idle seconds before a session expires (Tomcat's
    default 1800), or None for never. ``max_lifetime``: optional absolute seconds
    from creation. ``max_active_sessions``: cap on stored sessions, None for
    unbounded. ``detect_mutations``: snapshot mutable values on read to find
    in-place changes (only does work while changes are tracked).
    """

    max_inactive_interval: float | None = 1800.0
    max_lifetime: float | None = None
    max_active_sessions: int | None = None
    detect_mutations: bool = True

    def __post_init__(self) -> None:
        for name in ("max_inactive_interval", "max_lifetime"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value != value or value < 0
            ):
                raise ConfigError(f"{name} must be a number of seconds >= 0 or None, not {value!r}")
        if self.max_active_sessions is not None and (
            not isinstance(self.max_active_sessions, int) or self.max_active_sessions < 1
        ):
            raise ConfigError(
                f"max_active_sessions must be a positive integer or None, not {self.max_active_sessions!r}"
            )


@dataclass(slots=True)
class Dormant:
    """A copy of another member's session kept packed until something needs it.

    A state transfer hands a joining member thousands of sessions that it may never
    serve; decoding each into a :class:`Session` would cost far more time and memory
    than keeping the bytes. The store knows only what expiry needs; ``data`` belongs
    to whoever wakes it (the replication manager, through :attr:`SessionStore.waker`).
    """

    last_accessed: float
    created_at: float
    max_inactive_interval: float | None  # None: the store's default
    grace: float  # extra idle seconds a copy of another member's session is allowed
    data: Any


class SessionStore:
    """All live sessions of this member."""

    def __init__(
        self,
        policy: SessionPolicy | None = None,
        *,
        serializer: SessionSerializer | None = None,
        listeners: Iterable[SessionListener] = (),
        id_factory: Callable[[], str] = new_session_id,
        session_class: type[Session] = Session,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self._lock = lock if lock is not None else nullcontext()
        self.policy = policy or SessionPolicy()
        self.serializer = serializer or SessionSerializer()
        self.listeners: list[SessionListener] = list(listeners)
        self.session_class = session_class
        self._id_factory = id_factory
        self._sessions: dict[str, Session] = {}
        self._dormant: dict[str, Dormant] = {}
        # Turns a dormant copy into a stored session (it calls :meth:`replica`); without
        # one, dormant copies are never woken and only expire.
        self.waker: Callable[[str, Dormant], None] | None = None
        #: Called (under the lock) when a request rotates a session's id, before the request
        #: ends: the replication manager moves what it knows of the session to the new id.
        self.rotated: Callable[[str, str], None] | None = None
        self.change_sink: ChangeSink | None = None
        # Ids this store rotated away, with their successors: replication must never
        # recreate a retired id from a late message (session fixation), only follow it.
        self.retired: dict[str, str] = {}
        # Counted under the lock, for observability: sessions begun here, and ended here by reason
        # (a copy dropped because its owner ended the session is not counted).
        self.created = 0
        self.ended: dict[DestroyReason, int] = dict.fromkeys(DestroyReason, 0)

    # -- introspection -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions) + len(self._dormant)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions or session_id in self._dormant

    def ids(self) -> list[str]:
        """A snapshot of the stored session ids (dormant copies included)."""
        with self._lock:
            return [*self._sessions, *self._dormant]

    @property
    def dormant_count(self) -> int:
        return len(self._dormant)

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """The lock every change to the set of sessions holds (replication shares it)."""
        return self._lock

    def peek(self, session_id: str) -> Session | None:
        """The stored session with this id, without any expiry check (a dormant copy is woken)."""
        return self._get(session_id)

    def live(self, session_id: str) -> Session | None:
        """The unpacked stored session with this id; a dormant copy stays dormant (None)."""
        return self._sessions.get(session_id)

    def dormant(self, session_id: str) -> Dormant | None:
        """The dormant copy with this id, left dormant (to pass it on as it is)."""
        return self._dormant.get(session_id)

    def hold(self, session_id: str, copy: Dormant) -> None:
        """Keep a copy of another member's session packed; ``session_id`` must be unheld."""
        with self._lock:
            if session_id in self._sessions:
                raise ValueError(f"session {session_id} is already held")
            self._dormant[session_id] = copy

    @property
    def track_changes(self) -> bool:
        """True while someone consumes deltas (a replication manager, a test)."""
        return self.change_sink is not None

    # -- request lifecycle -----------------------------------------------------------------

    def new_session(self, now: float) -> Session:
        """A fresh, empty session that is stored only when first written."""
        session = self.session_class(store=self)
        session.created_at = session.last_accessed = now
        return session

    def load(self, session_id: str, now: float) -> Session | None:
        """The live session for an id this store issued, or None if unknown or expired.

        Every successful load must be paired with :meth:`release` at request end.
        """
        with self._lock:
            session = self._get(session_id)
            if session is None:
                return None
            if session._holders == 0 and self._is_expired(session, now):  # in use is not idle
                self._remove(session, DestroyReason.EXPIRED)
                return None
            if session._holders == 0:  # first request in: its flags start clean
                session.accessed = session.modified = session.new = False
            session._holders += 1
            self._start_tracking(session)
            return session

    def release(self, session: Session, now: float) -> SessionDelta | None:
        """End one request's use of ``session``: store, touch or drop it.

        Returns the delta the request produced when changes are tracked.
        """
        if session._store is not self:
            return None
        with self._lock:
            session._holders = max(0, session._holders - 1)
            session_id = session._id
            if session_id is None or self._sessions.get(session_id) is not session:
                return None  # never written, invalidated, or ended by a concurrent request
            if not dict.__len__(session) and session.modified:
                # Emptied by a request: nothing to keep (as Flask and Starlette). An empty
                # copy that replication has not filled yet is not "emptied".
                return self._remove(session, DestroyReason.INVALIDATED)
            if session.accessed:
                session.last_accessed = now
            if session._delta is None:
                # Untracked: forget what a delta would have said, so a delta begun
                # later (tracking switched on) does not claim a creation it never saw.
                session._was_created = session._meta_changed = False
                session._previous_id = None
                return None
            self._detect_mutations(session)
            return self._take_delta(session)

    # -- called by Session ---------------------------------------------------------------

    def _attach(self, session: Session) -> None:
        with self._lock:
            limit = self.policy.max_active_sessions
            if limit is not None and len(self) >= limit:
                session._refused = True
                raise TooManySessionsError(f"max_active_sessions ({limit}) reached; new sessions are refused")
            session_id = self._unused_id()
            session._id = session_id
            session.new = True
            session._was_created = True
            session._holders = max(session._holders, 1)
            self._start_tracking(session)
            self._sessions[session_id] = session
            self.created += 1
            if self.listeners:
                fire(self.listeners, "session_created", session)

    def _invalidate(self, session: Session) -> None:
        with self._lock:
            if session._id is not None and self._sessions.get(session._id) is session:
                self._remove(session, DestroyReason.INVALIDATED)
            else:
                session._clear_attributes()

    def _rotate(self, session: Session) -> str | None:
        with self._lock:
            old_id = session._id
            if old_id is None or self._sessions.get(old_id) is not session:
                return old_id  # ended meanwhile (expired or invalidated by another request)
            new_id = self._unused_id()
            self._sessions[new_id] = session
            del self._sessions[old_id]
            session._id = new_id
            self.retired[old_id] = new_id
            if len(self.retired) > _MAX_RETIRED:
                del self.retired[next(iter(self.retired))]
            if self.rotated is not None:
                self.rotated(old_id, new_id)
            if session._previous_id is None and not session._was_created:
                session._previous_id = old_id  # replicas know the session by its id at the last delta
            return new_id

    # -- copies of sessions other members own (replication) ------------------------------

    def replica(self, session_id: str, now: float) -> tuple[Session, bool]:
        """The stored copy of ``session_id``, created empty if missing; ``(session, created)``.

        Only replication calls this, with ids that came from authenticated peers.
        """
        with self._lock:
            session = self._get(session_id)
            if session is not None:
                return session, False
            session = self.session_class(store=self)
            session._id = session_id
            session.new = False
            session.created_at = session.last_accessed = now
            self._sessions[session_id] = session
            return session, True

    def rename(self, old_id: str, new_id: str) -> Session | None:
        """Re-key a copy whose owner rotated its id."""
        with self._lock:
            copy = self._dormant.pop(old_id, None)
            if copy is not None and new_id not in self:
                self._dormant[new_id] = copy  # still packed: nothing inside names its id
                return None
            if copy is not None:
                self._wake(old_id, copy)
            session = self._sessions.pop(old_id, None)
            if session is not None:
                session._id = new_id
                self._sessions[new_id] = session
            return session

    def drop(self, session_id: str) -> Session | None:
        """Remove a copy because its owner ended it; no delta, no listener (the caller decides)."""
        with self._lock:
            copy = self._dormant.pop(session_id, None)
            if copy is not None and self.listeners:
                self._wake(session_id, copy)  # listeners are told what ended, as for any copy
            session = self._sessions.pop(session_id, None)
            if session is not None:
                session._id = None
            return session

    # -- expiry ------------------------------------------------------------------------

    def in_use(self) -> list[Session]:
        """The sessions requests here are using now (loaded and not yet released)."""
        with self._lock:
            return [s for s in self._sessions.values() if s._holders and s._id is not None]

    def sweep(self, now: float) -> int:
        """Remove every expired session no request is using; returns how many."""
        with self._lock:
            expired = [s for s in self._sessions.values() if s._holders == 0 and self._is_expired(s, now)]
            for session in expired:
                self._remove(session, DestroyReason.EXPIRED)
            ended = [i for i, copy in self._dormant.items() if self._dormant_expired(copy, now)]
            for session_id in ended:
                copy = self._dormant.pop(session_id)
                if self.listeners:  # woken only to be ended, so listeners hear of it
                    woken = self._wake(session_id, copy)
                    if woken is not None:
                        self._remove(woken, DestroyReason.EXPIRED)
            return len(expired) + len(ended)

    def _dormant_expired(self, copy: Dormant, now: float) -> bool:
        idle = copy.max_inactive_interval
        if idle is None:
            idle = self.policy.max_inactive_interval
        if idle is not None and now - copy.last_accessed >= idle + copy.grace:
            return True
        lifetime = self.policy.max_lifetime
        return lifetime is not None and now - copy.created_at >= lifetime

    def _is_expired(self, session: Session, now: float) -> bool:
        idle = session.max_inactive_interval
        if (
            idle is not None
            and session.last_accessed is not None
            and now - session.last_accessed >= idle + session._grace
        ):
            return True
        lifetime = self.policy.max_lifetime
        return lifetime is not None and session.created_at is not None and now - session.created_at >= lifetime

    # -- internals -------------------------------------------------------------------

    def _unused_id(self) -> str:
        while True:  # 144 random bits: a collision is astronomically unlikely, but cheap to rule out
            session_id = self._id_factory()
            if session_id not in self._sessions and session_id not in self._dormant:
                return session_id

    def _get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None and self._dormant:
            with self._lock:  # a reader without the lock waits for a wake under way
                session = self._sessions.get(session_id)
                copy = self._dormant.pop(session_id, None) if session is None else None
                if copy is not None:
                    session = self._wake(session_id, copy)
        return session

    def _wake(self, session_id: str, copy: Dormant) -> Session | None:
        """Unpack a dormant copy (already taken out of the dormant map) into a stored
        session; None if nothing can wake it or it cannot be read."""
        if self.waker is None:
            return None
        with self._lock:
            self.waker(session_id, copy)
            return self._sessions.get(session_id)

    def _start_tracking(self, session: Session) -> None:
        if self.change_sink is not None and session._delta is None:
            session._delta = {}
            session._read = {} if self.policy.detect_mutations else None

    def _remove(self, session: Session, reason: DestroyReason) -> SessionDelta | None:
        session_id = session._id
        assert session_id is not None
        self._sessions.pop(session_id, None)
        self.ended[reason] += 1
        if self.listeners:
            fire(self.listeners, "session_destroyed", session, reason)
        delta = None
        if session._delta is not None and not session._was_created:
            # A session that never reached the replicas needs no tombstone there.
            delta = SessionDelta(
                session_id=session._previous_id or session_id,
                version=session.version + 1,
                destroyed=True,
                expired=reason is DestroyReason.EXPIRED,
            )
        session._clear_attributes()
        session._id = None
        session._previous_id = None
        session._was_created = False
        session._meta_changed = False
        session.new = True
        session.version = 0
        if delta is not None and self.change_sink is not None:
            self.change_sink(delta)
        return delta

    def _detect_mutations(self, session: Session) -> None:
        read = session._read
        if not read:
            return
        assert session._delta is not None
        dumps = self.serializer.dumps
        for key, before in read.items():
            value = dict.get(session, key, read)  # removed keys leave the snapshot map at removal
            if value is read:
                continue
            try:
                after = dumps(value)
            except TypeError as exc:
                # Changed in place into something unencodable: it cannot replicate.
                # Say so, and keep the rest of the session's changes flowing.
                log.error("session[%r] was changed in place into an unserializable value: %s", key, exc)
                session._delta.pop(key, None)
                read[key] = before
                continue
            if after != before:
                session._delta[key] = after
                read[key] = after
        if session._holders == 0:
            read.clear()

    def _take_delta(self, session: Session) -> SessionDelta | None:
        changes = session._delta
        assert changes is not None
        assert session._id is not None
        if not (changes or session._was_created or session._meta_changed or session._previous_id):
            return None
        session.version += 1
        sets: dict[str, Any] = {}
        removes = []
        for key, encoded in changes.items():
            if encoded is None:
                removes.append(key)
            else:
                sets[key] = encoded
        delta = SessionDelta(
            session_id=session._id,
            version=session.version,
            sets=sets,
            removes=frozenset(removes),
            created=session._was_created,
            previous_id=session._previous_id,
            max_inactive_interval=_interval_for_delta(session) if session._meta_changed else None,
        )
        changes.clear()
        session._was_created = False
        session._meta_changed = False
        session._previous_id = None
        if self.change_sink is not None:
            self.change_sink(delta)
        return delta


def _interval_for_delta(session: Session) -> float:
    """The idle timeout a delta carries: ``math.inf`` for none, since None means "unchanged"."""
    value = session.max_inactive_interval
    return math.inf if value is None else value
