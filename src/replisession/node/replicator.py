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
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..cluster_config import ClusterConfig
from ..core.backup import BackupManager
from ..core.channel import SendOutcome
from ..core.delta import SessionDelta
from ..core.messages import MemberInfo, SendMode
from ..core.replication import DeltaManager, Outgoing, check_want
from ..core.session import Session
from ..core.store import SessionStore
from .listener import ClusterListener
from .loop import Outcome, wait_all
from .member import ClusterMember

__all__ = ["Replicator"]

log = logging.getLogger("replisession.replication")

_MODES = {"async": SendMode.ASYNC, "ack": SendMode.ACK, "sync": SendMode.SYNC}
_KINDS = ("delta", "access", "sessions", "want", "placement", "placements", "missing")
_PLACING = ("sessions", "placement", "placements")  # a BackupManager's copies and placements
_REBALANCE_CHUNK = 256  # sessions re-placed per hold of the store's lock
_REBALANCE_WINDOW = 4  # chunks sent and not yet acknowledged

#: The sends of the request being handled (set per request by :meth:`Replicator.begin`).
_pending: contextvars.ContextVar[list[Outcome[SendOutcome]] | None] = contextvars.ContextVar(
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
        # The last delta sent per session: a request whose own write went out with a
        # concurrent request's release must still wait for it (parallel XHRs).
        self._in_flight: dict[str, Outcome[SendOutcome]] = {}
        self._in_flight_lock = threading.Lock()
        self._rebalances = 0  # a newer rebalance makes an older one stop
        # BackupManager: full copies whose send failed, per member (member id -> member, ids);
        # the timer sends them again while that member is still in the cluster.
        self._unsent: dict[str, tuple[MemberInfo, set[str]]] = {}
        self._unsent_lock = threading.Lock()
        member.listeners.append(self)
        member.on_bound = self._attach
        for kind in _KINDS:
            member.on(kind, self._handler(kind))

    def _attach(self, local: MemberInfo) -> None:
        """On the member thread, once bound and before it dials or answers anyone."""
        if self.manager is None and self.config.manager == "backup":
            self.manager = BackupManager(self.store, local, backups=self.config.backups)
        elif self.manager is None:
            self.manager = DeltaManager(
                self.store, local, notify_listeners_on_replication=self.config.notify_listeners_on_replication
            )
        else:  # a restart: same sessions and stamps, new identity
            self.manager.local = local

    def tick(self) -> None:
        """From the node's timer: forget old tombstones, retry a stalled state transfer, and
        keep the sessions long requests here are using alive on the other members."""
        manager = self.manager
        if manager is None:
            return
        now = self.clock()
        with self._unsent_lock:
            unsent, self._unsent = self._unsent, {}
        members = self.member.members()
        live = {member.id for member in members}
        resent: list[Outgoing] = []
        with self.store.lock:
            manager.tick(now)
            outgoing = manager.retry_transfer(members, now)
            outgoing.extend(manager.keepalive(self.store.in_use(), now))  # long requests
            if isinstance(manager, BackupManager):
                for member, session_ids in unsent.values():
                    if member.id in live:  # one that left gets its copies from the re-placement
                        resent.extend(manager.resend(member, session_ids, now))
            for message in resent:  # acknowledged, so a copy lost again is noted again
                self._send_waited(message, SendMode.ACK, track=False)
        for message in outgoing:
            self._send(message, track=False)

    # -- the request path (request threads) ---------------------------------------------------

    def begin(self) -> None:
        _pending.set([])

    def on_delta(self, delta: SessionDelta) -> None:
        """The store's change sink: a session changed or ended; send it now."""
        manager = self.manager
        if manager is None:
            return
        future = None
        with self.store.lock:  # sent in the order decided: a rebalance sends under this lock too
            for message in manager.replicate_all(delta, self.clock()):
                future = self._send(message)
        session_id = delta.session_id
        with self._in_flight_lock:
            if delta.destroyed or future is None or future.done():  # None: async; done: nobody to wait for
                self._in_flight.pop(session_id, None)
                return
            self._in_flight[session_id] = future

        def landed(done: Outcome[SendOutcome]) -> None:  # only in flight matters
            with self._in_flight_lock:
                if self._in_flight.get(session_id) is done:
                    del self._in_flight[session_id]

        future.add_done_callback(landed)

    def accessed(self, session: Session) -> None:
        """A request ended without a delta of its own: a throttled notice, and its
        writes that a concurrent request's release carried are still waited for."""
        manager = self.manager
        if manager is None or session.id is None:
            return
        with self._in_flight_lock:
            in_flight = self._in_flight.get(session.id)
        pending = _pending.get()
        if in_flight is not None and not in_flight.done() and pending is not None and session.modified:
            pending.append(in_flight)
        if not session.accessed:
            return
        with self.store.lock:
            for message in manager.accessed(session, self.clock()):
                self._send(message)

    def began(self, session: Session) -> None:
        """A request begins with a session (see :meth:`DeltaManager.began`)."""
        manager = self.manager
        if manager is None:
            return
        with self.store.lock:
            for message in manager.began(session, self.clock()):
                self._send(message, track=False)

    def pending(self) -> list[Outcome[SendOutcome]]:
        """The sends this request must wait for before its response leaves, and forget them."""
        futures = _pending.get() or []
        _pending.set(None)
        return futures if self.mode is not SendMode.ASYNC else []

    def failed(self, outcomes: Iterable[SendOutcome | BaseException]) -> bool:
        """Log what did not reach every member in time; True when the request must fail (503)."""
        failed = False
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.warning("replication send failed: %r", outcome)
                failed = True
                continue
            for member, status, detail in outcome.failures():
                log.warning("replication to %s: %s %s", member, status.value, detail)
                failed = True
        return failed and self.fail_on_timeout

    def fetch(self, session_id: str, route: str | None) -> Outcome[SendOutcome] | None:
        """Ask for a session this member lacks, or may hold stale; None when nobody can help.

        A cookie routed to another live member means that member served the session
        last (the balancer returned to us: a flip-flop); its copy is the newest.
        """
        manager = self.manager
        if manager is None:
            return None
        members = self.member.members()
        if not members:
            return None  # nobody to ask (and the member may still be starting)
        with self.store.lock:
            successor = manager.successor(session_id)  # a losing rotation: the winner's copy
        plan = fetch_targets(manager, self.store, session_id, successor, route, self.member.local.route, members)
        if plan is None:
            return None
        session_id, targets = plan
        request = manager.fetch([session_id], targets)
        return self.member.send(request.kind, request.payload, SendMode.SYNC, request.targets)

    # -- membership (member thread) -------------------------------------------------------

    def member_joined(self, member: MemberInfo) -> None:
        if self.manager is not None:
            with self.store.lock:
                outgoing = self.manager.request_transfer([member], self.clock())
            for message in outgoing:
                self._send(message, track=False)
            self._rebalance()

    def member_left(self, member: MemberInfo, reason: str) -> None:
        if self.manager is not None:
            with self.store.lock:
                outgoing = self.manager.member_left(member, self.member.members(), self.clock())
            for message in outgoing:
                self._send(message, track=False)
            self._rebalance()

    def _rebalance(self) -> None:
        """Re-place every session after a membership change (BackupManager), on a thread of its
        own so the member loop keeps serving: chunk by chunk, each chunk's messages sent before
        the store's lock is let go, so a request's delta can never overtake the copy it updates."""
        if not self.manager or not self.manager.locates:
            return
        self._rebalances += 1
        threading.Thread(target=self._rebalance_all, args=(self._rebalances,), daemon=True).start()

    def _rebalance_all(self, generation: int) -> None:
        manager = self.manager
        assert manager is not None
        ids = self.store.ids()
        window: list[list[Outcome[SendOutcome]]] = []
        started, moved = time.monotonic(), 0
        for start in range(0, len(ids), _REBALANCE_CHUNK):
            if generation != self._rebalances:
                return  # the membership changed again: a newer pass covers everything
            with self.store.lock:
                messages = manager.rebalance(ids[start : start + _REBALANCE_CHUNK], self.clock())
                window.append([self._send_waited(message, SendMode.ACK, track=False) for message in messages])
            moved += sum(len(message.payload["sessions"]) for message in messages if message.kind == "sessions")
            if len(window) > _REBALANCE_WINDOW:
                wait_all(window.pop(0), self.config.send_timeout)
        for futures in window:
            wait_all(futures, self.config.send_timeout)
        with self.store.lock:
            if generation == self._rebalances:
                manager.rebalanced()
        if moved:
            log.info("rebalanced %d of %d sessions in %.3fs", moved, len(ids), time.monotonic() - started)

    # -- what other members send (member thread) -----------------------------------------------

    def _handler(self, kind: str) -> Callable[[MemberInfo, Any], Iterable[tuple[str, Any]] | None]:
        def handle(sender: MemberInfo, payload: Any) -> Iterable[tuple[str, Any]] | None:
            manager = self.manager
            assert manager is not None  # attached before the member dials or answers
            if kind == "want" and check_want(payload)["ids"] is None:
                self._stream_to(sender)
                return None
            # A transfer batch makes thousands of objects at once: the cyclic GC would
            # rescan the whole growing store every few hundred (half the transfer time).
            collecting = kind == "sessions" and gc.isenabled()
            if collecting:
                gc.disable()
            try:
                with self.store.lock:
                    replies = manager.receive(sender, kind, payload, self.clock())
                    for reply in replies:  # for others than the sender (a forward; None: every member)
                        if reply.targets != (sender,):
                            self._send(reply, track=False)
            finally:
                if collecting:
                    gc.enable()
            return [(r.kind, r.payload) for r in replies if r.targets == (sender,)]

        return handle

    def _stream_to(self, member: MemberInfo) -> None:
        manager = self.manager
        assert manager is not None
        with self.store.lock:
            stream = manager.stream(member, self.clock)
        started = time.monotonic()

        future = self.member.stream((message.kind, message.payload, member) for message in _gc_paused(stream))

        def report(done: concurrent.futures.Future[int]) -> None:
            elapsed = time.monotonic() - started
            if done.cancelled() or done.exception() is not None or not stream.finished:
                self.member.metrics.state_transfers_stopped += 1
                log.warning("state transfer to %s stopped after %d sessions (%.3fs)", member, stream.sent, elapsed)
            else:
                self.member.metrics.state_transfers_sent += 1
                log.info("state transfer to %s: %d sessions in %.3fs", member, stream.sent, elapsed)

        future.add_done_callback(report)

    def _send(self, message: Outgoing, *, track: bool = True) -> Outcome[SendOutcome] | None:
        """Send in the configured mode a message the request waits for, else async; None for
        an async send, whose outcome nobody looks at (no future is made for it)."""
        mode = self.mode if message.wait else SendMode.ASYNC
        if mode is SendMode.ASYNC:
            self.member.post(message.kind, message.payload, message.targets)
            return None
        return self._send_waited(message, mode, track=track)

    def _send_waited(self, message: Outgoing, mode: SendMode, *, track: bool = True) -> Outcome[SendOutcome]:
        future = self.member.send(message.kind, message.payload, mode, message.targets)
        if message.kind in _PLACING and isinstance(self.manager, BackupManager):
            future.add_done_callback(self._copies_sent(message))
        pending = _pending.get()
        if track and message.wait and pending is not None:
            pending.append(future)
        return future

    def _copies_sent(self, message: Outgoing) -> Callable[[Outcome[SendOutcome]], None]:
        """A done-callback noting the full copies (or placements) that did not reach a member:
        the timer sends that member the copy and the placement again."""

        def done(future: Outcome[SendOutcome]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # not sent at all: the member stopped
            failures = future.result().failures()
            if not failures:
                return
            session_ids = _placed_ids(message)
            with self._unsent_lock:
                for member, status, detail in failures:
                    log.info("%s to %s not confirmed (%s %s): sent again", message.kind, member, status.value, detail)
                    self._unsent.setdefault(member.id, (member, set()))[1].update(session_ids)

        return done


def fetch_targets(
    manager: DeltaManager,
    store: SessionStore,
    session_id: str,
    successor: str | None,
    route: str | None,
    local_route: str | None,
    members: list[MemberInfo],
) -> tuple[str, list[MemberInfo]] | None:
    """Whom :meth:`Replicator.fetch` asks for a session, and by which id; None: nobody.

    ``successor``: the winning id when ``session_id`` lost a concurrent rotation.
    """
    if successor is None and route == local_route and store.peek(session_id) is not None:
        if not manager.partial(session_id):
            return None  # the usual request: a session this member served last, held here
    if manager.is_dead(session_id):
        return None
    session_id = successor or session_id
    same_route = [m for m in members if route is not None and m.route == route]
    if manager.locates and store.peek(session_id) is None:
        targets = members  # copies are on a few members: ask them all
    elif store.peek(session_id) is not None and not manager.partial(session_id):
        if route == local_route or not same_route:
            return None  # ours, or the member that served it last is gone (plain failover)
        # The balancer came back to us while that member is alive: it may have writes we
        # missed (async mode, a partition with send_failure=log). Take its copy first.
        targets = same_route
    else:
        targets = same_route or members
    return session_id, targets


def _placed_ids(message: Outgoing) -> set[str]:
    """The sessions a copy or placement message is about (built here, so well formed)."""
    if message.kind == "sessions":
        return {entry[0] for entry in message.payload["sessions"]}
    if message.kind == "placement":
        return {message.payload["id"]}
    return {body["id"] for body in message.payload["placements"]}


def _gc_paused(batches: Iterable[Outgoing]) -> Iterator[Outgoing]:
    """Build each batch with the cyclic GC paused: encoding thousands of sessions would
    otherwise trigger collections that rescan the donor's whole store, again and again."""
    iterator = iter(batches)
    while True:
        collecting = gc.isenabled()
        gc.disable()
        try:
            batch = next(iterator, None)
        finally:
            if collecting:
                gc.enable()
        if batch is None:
            return
        yield batch
