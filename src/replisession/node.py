"""The node: wires this member's session store to a clock, a lock and a timer.

A process is a cluster of one until the peer channel arrives; the node already
owns what a member owns: the store, the single timer that sweeps expired
sessions, and the lock that makes store operations safe for threaded WSGI
servers. It runs its timer on its own daemon thread, so it works the same under
ASGI servers (with or without a lifespan), threaded WSGI servers and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from .config import SessionConfig
from .core.delta import SessionDelta
from .core.listeners import SessionListener
from .core.serializer import SessionSerializer
from .core.session import Session
from .core.store import SessionStore

__all__ = ["Node"]

log = logging.getLogger("replisession.node")

Clock = Callable[[], float]


class Node:
    """One member's sessions, expiry timer and (later) peers."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        listeners: Iterable[SessionListener] = (),
        serializer: SessionSerializer | None = None,
        session_class: type[Session] = Session,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = SessionStore(
            config.policy, serializer=serializer, listeners=listeners, session_class=session_class
        )
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None
        self._delta_listeners: list[Callable[[SessionDelta], None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the expiry timer (idempotent; the adapters call it on first use)."""
        if self._timer is not None:
            return
        with self._lock:
            if self._timer is not None:
                return
            self._stopping.clear()
            self._timer = threading.Thread(target=self._run_timer, name="replisession-timer", daemon=True)
            self._timer.start()

    def stop(self) -> None:
        timer = self._timer
        if timer is None:
            return
        self._stopping.set()
        timer.join(timeout=5)
        self._timer = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def _run_timer(self) -> None:
        interval = self.config.sweep_interval
        while not self._stopping.wait(interval):
            try:
                self.sweep()
            except Exception:  # the timer must outlive a faulty listener or a bug
                log.exception("session sweep failed")

    # -- store operations, serialised ------------------------------------------------------

    def new_session(self) -> Session:
        return self.store.new_session(self.clock())

    def load(self, session_id: str) -> Session | None:
        now = self.clock()
        with self._lock:
            return self.store.load(session_id, now)

    def release(self, session: Session) -> SessionDelta | None:
        now = self.clock()
        with self._lock:
            return self.store.release(session, now)

    def sweep(self) -> int:
        now = self.clock()
        with self._lock:
            expired = self.store.sweep(now)
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
