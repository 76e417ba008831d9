"""The node: this process's session store, its expiry timer and its cluster member.

It owns the store, the timer that sweeps expired sessions, the lock that makes
store operations safe for threaded WSGI servers, and, when the cluster
configuration enables it (seeds or multicast), the :class:`ClusterMember`. The
timer runs on a daemon thread. The member runs on the ASGI server's loop when a
lifespan starts it (:meth:`Node.start_async`), and on an event-loop thread of its
own otherwise (threaded WSGI servers, ASGI without a lifespan, tests).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from ..cluster_config import ClusterConfig
from ..config import SessionConfig
from ..core.delta import SessionDelta
from ..core.listeners import SessionListener
from ..core.messages import MemberInfo
from ..core.serializer import SessionSerializer
from ..core.session import Session
from ..core.store import SessionStore
from .listener import ClusterListener
from .member import ClusterMember
from .metrics import Metrics
from .replicator import Replicator

__all__ = ["Node"]

log = logging.getLogger("replisession.node")

Clock = Callable[[], float]


class Node:
    """One member's sessions, expiry timer and, in a cluster, its membership and replication."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        listeners: Iterable[SessionListener] = (),
        serializer: SessionSerializer | None = None,
        session_class: type[Session] = Session,
        clock: Clock = time.monotonic,
        cluster: ClusterConfig | None = None,
        cluster_listeners: Iterable[ClusterListener] = (),
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.member: ClusterMember | None = None
        self.replicator: Replicator | None = None
        self.clock = clock
        #: This member's counters (kept across restarts of the member and in a forked child).
        self.metrics = Metrics()
        # Re-entrant: a listener called under the lock may use the store again.
        self.store = SessionStore(
            config.policy,
            serializer=serializer,
            listeners=listeners,
            session_class=session_class,
            lock=threading.RLock(),
        )
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None
        self._pid = 0  # the process the timer runs in: a fork (gunicorn --preload) has none
        self._delta_listeners: list[Callable[[SessionDelta], None]] = []
        if cluster is not None and cluster.enabled:
            members_heard = [*cluster_listeners, _MembershipCounter(self.metrics)]
            self.member = ClusterMember(cluster, listeners=members_heard, metrics=self.metrics)
            self.replicator = Replicator(self.store, self.member, cluster, clock)
        # A fork (gunicorn --preload, a respawned worker) inherits no threads and maybe a
        # held lock: the child starts afresh, as a new incarnation, on its first use.
        os.register_at_fork(after_in_child=self._after_fork)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the expiry timer and join the cluster (idempotent). The ASGI middleware calls it
        at lifespan startup or on the first request, WSGI and Flask with the app.

        Binding the peer channel can fail (no free port in the range): that error
        surfaces here, at start, rather than later.
        """
        if self.running:
            return
        with self._start_lock:
            if self.running:
                return
            if self.member is not None:
                self.member.start()  # the replicator attaches while it binds, before it joins
            self._started()

    async def start_async(self) -> None:
        """Start from a coroutine on the server's event loop (an ASGI lifespan): the member is
        hosted on that loop, so requests send their deltas with no thread hand-off."""
        if self.running:
            return
        if self.member is not None:
            await self.member.start_hosted()
        self._started()

    def _started(self) -> None:
        if self.member is not None:
            self.store.change_sink = self._publish  # track changes: they replicate
            atexit.register(self.stop)  # leave gracefully even without a lifespan
        self._stopping = threading.Event()
        self._timer = threading.Thread(target=self._run_timer, name="replisession-timer", daemon=True)
        self._pid = os.getpid()
        self._timer.start()

    async def stop_async(self) -> None:
        """Leave the cluster from a coroutine on the server's loop (an ASGI lifespan's shutdown)."""
        if self.member is not None and self.member.hosted:
            await self.member.stop_hosted()
        self.stop()  # the rest of stopping (the member has left: its stop() returns at once)

    def stop(self) -> None:
        """Leave the cluster gracefully and stop the timer."""
        if self.member is not None:
            atexit.unregister(self.stop)
            if not self._delta_listeners:
                self.store.change_sink = None  # nothing consumes changes until the next start
            self.member.stop()
        if not self.running:
            self._timer = None
            return
        assert self._timer is not None
        self._stopping.set()
        self._timer.join(timeout=5)
        self._timer = None

    def _after_fork(self) -> None:
        self.store._lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._timer = None
        if self.member is not None and self.cluster is not None:
            listeners = [listener for listener in self.member.listeners if listener is not self.replicator]
            self.member = ClusterMember(self.cluster, listeners=listeners, metrics=self.metrics)
            self.replicator = Replicator(self.store, self.member, self.cluster, self.clock)

    @property
    def running(self) -> bool:
        return self._timer is not None and self._pid == os.getpid()

    def _run_timer(self) -> None:
        stopping = self._stopping
        while not stopping.wait(self._timer_interval()):
            try:
                self.sweep()
            except Exception:  # the timer must outlive a faulty listener or a bug
                log.exception("session sweep failed")

    def _timer_interval(self) -> float:
        """The sweep interval, or the replication's keep-alive interval when shorter (a short
        idle timeout): a long request's notices must reach the other members before they
        expire it."""
        manager = self.replicator.manager if self.replicator is not None else None
        interval = self.config.sweep_interval
        return min(interval, manager.keepalive_interval) if manager is not None else interval

    # -- store operations (the store holds its lock) --------------------------------------

    def new_session(self) -> Session:
        return self.store.new_session(self.clock())

    def load(self, session_id: str) -> Session | None:
        """The live session for a cookie's id. An id that lost a concurrent rotation (another
        member rotated the same id at the same time, and its id won) opens the session under
        the winning id; the front then re-issues the cookie, since the ids differ."""
        now = self.clock()
        session = self.store.load(session_id, now)
        manager = self.replicator.manager if self.replicator is not None else None
        if session is None and manager is not None:
            with self.store.lock:
                successor = manager.successor(session_id)
            if successor is not None:
                session = self.store.load(successor, now)
        if session is not None and self.replicator is not None:
            self.replicator.began(session)
        return session

    def release(self, session: Session) -> SessionDelta | None:
        delta = self.store.release(session, self.clock())
        if delta is None and self.replicator is not None:
            self.replicator.accessed(session)
        return delta

    def sweep(self) -> int:
        expired = self.store.sweep(self.clock())
        if self.replicator is not None:
            self.replicator.tick()
        if expired:
            log.debug("expired %d idle sessions", expired)
        return expired

    # -- change consumers ------------------------------------------------------------------

    def add_delta_listener(self, listener: Callable[[SessionDelta], None]) -> None:
        """Receive every session delta this member produces (turns change tracking on)."""
        self._delta_listeners.append(listener)
        self.store.change_sink = self._publish

    def _publish(self, delta: SessionDelta) -> None:
        for listener in self._delta_listeners:
            listener(delta)
        if self.replicator is not None:
            self.replicator.on_delta(delta)


class _MembershipCounter(ClusterListener):
    """Counts membership changes (the member logs each one at INFO under ``replisession.cluster``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def member_joined(self, member: MemberInfo) -> None:
        self.metrics.members_joined += 1

    def member_suspected(self, member: MemberInfo) -> None:
        self.metrics.members_suspected += 1

    def member_left(self, member: MemberInfo, reason: str) -> None:
        self.metrics.members_left += 1
