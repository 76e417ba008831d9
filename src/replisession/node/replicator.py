"""Replication at request end (Tomcat's ReplicationValve + DeltaManager + JvmRouteBinderValve glue).

The :class:`~replisession.core.replication.DeltaManager` decides what to send and
how to apply what arrives; this module runs it: it turns the store's deltas into
sends on the cluster member, collects the sends a request made so the adapter can
wait for them (``ack``/``sync``) before the response leaves, fetches a session
this member lacks (not transferred yet) or may hold stale (a cookie routed to a
live other member), and streams state to members that ask for it.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..cluster_config import ClusterConfig
from ..core.channel import SendOutcome
from ..core.delta import SessionDelta
from ..core.messages import MemberInfo, SendMode
from ..core.replication import DeltaManager, Outgoing
from ..core.session import Session
from ..core.store import SessionStore
from .member import ClusterListener, ClusterMember

__all__ = ["Replicator"]

log = logging.getLogger("replisession.replication")

_MODES = {"async": SendMode.ASYNC, "ack": SendMode.ACK, "sync": SendMode.SYNC}
_KINDS = ("delta", "access", "sessions", "want")

#: The sends of the request being handled (set per request by :meth:`Replicator.begin`).
_pending: contextvars.ContextVar[list[concurrent.futures.Future[SendOutcome]] | None] = contextvars.ContextVar(
    "replisession_pending", default=None
)


class Replicator(ClusterListener):
    def __init__(
        self, store: SessionStore, member: ClusterMember, config: ClusterConfig, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.member = member
        self.config = config
        self.clock = clock
        self.mode = _MODES[config.send_mode]
        self.fail_on_timeout = config.send_failure == "fail"
        self.manager: DeltaManager | None = None
        member.listeners.append(self)

    def start(self) -> None:
        """After the member started (its identity is known): begin replicating."""
        self.manager = DeltaManager(
            self.store, self.member.local, notify_listeners_on_replication=self.config.notify_listeners_on_replication
        )
        for kind in _KINDS:
            self.member.on(kind, self._handler(kind))

    # -- the request path (request threads) ---------------------------------------------------

    def begin(self) -> None:
        _pending.set([])

    def on_delta(self, delta: SessionDelta) -> None:
        """The store's change sink: a session changed or ended; send it now."""
        manager = self.manager
        if manager is None:
            return
        with self.store.lock:
            outgoing = manager.replicate(delta, self.clock())
        self._send(outgoing)

    def accessed(self, session: Session) -> None:
        manager = self.manager
        if manager is None:
            return
        with self.store.lock:
            outgoing = manager.accessed(session, self.clock())
        for message in outgoing:
            self._send(message)

    def pending(self) -> list[concurrent.futures.Future[SendOutcome]]:
        """The sends this request must wait for before its response leaves, and forget them."""
        futures = _pending.get() or []
        _pending.set(None)
        return futures if self.mode is not SendMode.ASYNC else []

    def failed(self, outcomes: Iterable[SendOutcome]) -> bool:
        """Log what did not reach every member in time; True when the request must fail (503)."""
        failures = [failure for outcome in outcomes for failure in outcome.failures()]
        for member, status, detail in failures:
            log.warning("replication to %s: %s %s", member, status.value, detail)
        return bool(failures) and self.fail_on_timeout

    def fetch(self, session_id: str, route: str | None) -> concurrent.futures.Future[SendOutcome] | None:
        """Ask for a session this member lacks, or may hold stale; None when nobody can help.

        A cookie routed to another live member means that member served the session
        last (the balancer returned to us: a flip-flop); its copy is the newest.
        """
        manager = self.manager
        if manager is None or manager.is_dead(session_id):
            return None
        members = self.member.members()
        if not members:
            return None
        same_route = [m for m in members if route is not None and m.route == route]
        if self.store.peek(session_id) is not None:
            if route == self.member.local.route or not same_route:
                return None  # ours, or the member that served it last is gone (plain failover)
            # The balancer came back to us while that member is alive: it may have writes we
            # missed (async mode, a partition with send_failure=log). Take its copy first.
            targets = same_route
        else:
            targets = same_route or members
        request = manager.fetch([session_id], targets)
        return self.member.send(request.kind, request.payload, SendMode.SYNC, request.targets)

    # -- membership (member thread) -------------------------------------------------------

    def member_joined(self, member: MemberInfo) -> None:
        if self.manager is not None:
            with self.store.lock:
                outgoing = self.manager.request_transfer([member])
            for message in outgoing:
                self._send(message, track=False)

    def member_left(self, member: MemberInfo, reason: str) -> None:
        if self.manager is not None:
            with self.store.lock:
                outgoing = self.manager.member_left(member, self.member.members())
            for message in outgoing:
                self._send(message, track=False)

    # -- what other members send (member thread) -----------------------------------------------

    def _handler(self, kind: str) -> Callable[[MemberInfo, Any], Iterable[tuple[str, Any]] | None]:
        def handle(sender: MemberInfo, payload: Any) -> Iterable[tuple[str, Any]] | None:
            manager = self.manager
            assert manager is not None
            if kind == "want" and isinstance(payload, dict) and payload.get("ids", 0) is None:
                self._stream_to(sender)
                return None
            with self.store.lock:
                replies = manager.receive(sender, kind, payload, self.clock())
            return [(reply.kind, reply.payload) for reply in replies]

        return handle

    def _stream_to(self, member: MemberInfo) -> None:
        manager = self.manager
        assert manager is not None
        with self.store.lock:
            stream = manager.stream(member, self.clock)
        started = time.monotonic()

        future = self.member.stream((message.kind, message.payload, member) for message in stream)
        future.add_done_callback(
            lambda f: log.info(
                "state transfer to %s: %d sessions in %.3fs", member, stream.sent, time.monotonic() - started
            )
        )

    def _send(self, message: Outgoing, *, track: bool = True) -> None:
        mode = self.mode if message.wait else SendMode.ASYNC
        future = self.member.send(message.kind, message.payload, mode, message.targets)
        pending = _pending.get()
        if track and message.wait and pending is not None:
            pending.append(future)
