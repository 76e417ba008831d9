"""A chaos harness for the BackupManager: members on SimCluster, driven as ``node/replicator.py`` drives them.

:class:`BackupSim` subclasses :class:`.replication_sim.ReplicationSim` and runs a
:class:`BackupNode` (a BackupManager with the DeltaManager harness's ``StampWatch``
hooks) on every member. What a node does, and where the real one does it:

* **A request** is three-phased, like a request through ``web/front.py``: the
  fetch (``Replicator.fetch``'s own ``fetch_targets``: a ``want`` ``sync`` to every
  member when there is no copy here, to the cookie route's member when it is alive
  and not us, none otherwise); once its outcome is in (or ``send_timeout``
  passed: the adapter's ``Fetch`` wait), the load (``Node.load``: ``store.load``, the
  successor of a losing id, ``began``; a fresh session when nothing is found) and the
  user's action; then, a hold later, the release (``Node.release``). Requests of a
  round are all issued at once and their phases interleave with each other's
  messages.
* **Sends** map as ``Replicator._send`` maps them: ``Outgoing.wait`` is ``sync``,
  else ``async``; a change's messages go out as the store's change sink fires
  (``on_delta``: an invalidation in the middle of a request too), and a request
  waits for its own waited sends, and for the in-flight delta of its session when a
  concurrent request's release carried its write (``Replicator.accessed``). Full
  copies and placements that a member did not confirm are noted and sent again by
  the timer (``_copies_sent`` / ``resend``, ``ack`` mode).
* **Replies** to the sender go back ``async`` on the same link, ahead of the
  acknowledgement (``ClusterMember._message``); replies for other members are sent
  like any message (``Replicator._handler``).
* **Membership**: on a join ``request_transfer`` then a rebalance, on a leave
  ``member_left`` then a rebalance: ``rebalance(all ids)`` sent ``ack``, and
  ``rebalanced()`` once every send of the newest pass completed (``_rebalance_all``).
* **The timer**: ``store.sweep`` (its deltas through the sink), ``tick``,
  ``retry_transfer``, ``keepalive(store.in_use())``, the copies to send again.

Links are FIFO by default (:class:`FifoCluster`), as the real transport's TCP
connections are: a message never overtakes one sent earlier to the same member, and
replies precede the acknowledgement. ``fifo=False`` lets delays reorder one link's
messages too (SimCluster's own behaviour), which the real transport does not do.

Deliberate simplifications: the node reacts to membership events and runs its timer
after each simulation step (0.01 s), not at once; a rebalance sends all its chunks at
once (one chunk holds up to 256 sessions; schedules have fewer); the fetch a request
issues is not re-issued for a second cookie.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from replisession.core.backup import BackupManager
from replisession.core.membership import MemberJoined, MemberLeft
from replisession.core.messages import MemberInfo, SendMode
from replisession.core.replication import Outgoing, check_want
from replisession.core.session import Session
from replisession.node.replicator import _placed_ids, fetch_targets
from replisession.testing import SimCluster, SimMember

from .replication_sim import (
    Done,
    History,
    Node,
    Op,
    Replica,
    ReplicationSim,
    Request,
    Sent,
    StampWatch,
    act,
    contents,
)

KINDS = ("delta", "access", "sessions", "want", "placement", "placements", "missing")
PLACING = ("sessions", "placement", "placements")
SEND_TIMEOUT = 3.0  # SimCluster's, and ClusterConfig's default
TIMER = 0.1  # seconds between two runs of a node's timer


class WatchedBackup(StampWatch, BackupManager):
    """A BackupManager with the hooks that note what a known DeltaManager bug changed."""


class FifoCluster(SimCluster):
    """A SimCluster whose links keep their order (TCP): a delay never lets a message overtake
    one sent earlier on the same link (a duplicate comes after its original)."""

    def __init__(self, *args: Any, fifo: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fifo = fifo
        self._last: dict[tuple[str, str], float] = {}

    def _delay(self, sender: SimMember, target: SimMember) -> float:
        delay = self.network.delay()
        if not self.fifo:
            return delay
        link = (sender.info.id, target.info.id)
        at = max(self.clock() + delay, self._last.get(link, 0.0))
        self._last[link] = at
        return at - self.clock()


def read_copies(node: Node) -> dict[str, dict[str, Any]]:
    """Every session a member holds, live or packed, read without unpacking anything."""
    store = node.store
    found = {session_id: contents(session) for session_id, session in store._sessions.items()}
    for session_id, dormant in store._dormant.items():
        packed = msgpack.unpackb(dormant.data[1])
        found[session_id] = store.serializer.loads(packed[3])
    return found


class BackupNode(Node):
    """A BackupManager on a SimMember, wired as ``node/replicator.py`` and ``node/sessions.py`` wire it."""

    def __init__(self, sim: BackupSim, member: SimMember, offset: float) -> None:
        # Not Node.__init__: it makes a DeltaManager; the rest is the same.
        self.sim = sim
        self.member = member
        self.offset = offset
        self.replica = Replica(member.info, sim.ids, policy=sim.policy, manager=WatchedBackup, **sim.options)
        self.manager: BackupManager = self.replica.manager  # type: ignore[assignment]
        self.manager.dropped = sim.dropped  # type: ignore[attr-defined]
        self.store = self.replica.store
        self.store.change_sink = self._on_delta
        self.streams = []
        self.transfer_requests = []
        self._events_seen = 0
        self._waiting: list[Sent] = []
        self._pending: list[Sent] | None = None  # the request being handled (Replicator's _pending)
        self._in_flight: dict[str, Sent] = {}
        self._placing: list[tuple[Sent, Outgoing]] = []
        self.unsent: dict[str, tuple[MemberInfo, set[str]]] = {}
        self._rebalances = 0
        self._rebalancing: tuple[int, list[Sent]] | None = None
        self._next_timer = 0.0
        for kind in KINDS:
            member.handlers[kind] = self._handler(kind)

    def sessions(self) -> dict[str, dict[str, Any]]:
        return read_copies(self)

    # -- sends (Replicator._send, _send_waited, _copies_sent) ---------------------------------

    def _send(self, message: Outgoing, *, track: bool = True) -> Sent | None:  # type: ignore[override]
        if not message.wait:
            self.sim.cluster.send(self.member, message.kind, message.payload, SendMode.ASYNC, message.targets)
            return None
        return self._send_waited(message, SendMode.SYNC, track=track)

    def _send_waited(self, message: Outgoing, mode: SendMode, *, track: bool = True) -> Sent:
        targets = list(message.targets) if message.targets is not None else self.member.membership.members()
        request_id = self.sim.cluster.send(self.member, message.kind, message.payload, mode, targets)
        sent = Sent(message.kind, request_id, frozenset(t.id for t in targets), self.sim.cluster.clock())
        self._waiting.append(sent)
        if message.kind in PLACING:
            self._placing.append((sent, message))
        if track and self._pending is not None:
            self._pending.append(sent)
        self._collect()
        return sent

    def _collect(self) -> None:
        super()._collect()
        for sent, message in list(self._placing):
            if sent.outcome is None:
                continue
            self._placing.remove((sent, message))
            for member, _status, _detail in sent.outcome.failures():
                self.unsent.setdefault(member.id, (member, set()))[1].update(_placed_ids(message))

    def _on_delta(self, delta: Any) -> None:
        """The store's change sink (``Replicator.on_delta``)."""
        last = None
        for message in self.manager.replicate_all(delta, self.now()):
            last = self._send(message)
        if delta.destroyed or last is None or last.outcome is not None:
            self._in_flight.pop(delta.session_id, None)
        else:
            self._in_flight[delta.session_id] = last

    # -- what arrives (Replicator._handler, ClusterMember._message) ------------------------------

    def _handler(self, kind: str) -> Callable[[SimMember, MemberInfo, Any], None]:
        def handle(member: SimMember, sender: MemberInfo, payload: Any) -> None:
            if kind == "want" and check_want(payload)["ids"] is None:
                self._stream_to(sender)
                return
            try:
                replies = self.manager.receive(sender, kind, payload, self.now())
            except Exception as exc:
                self.sim.errors.append((self.info.route, kind, repr(exc)))
                raise
            back = []
            for reply in replies:
                if reply.targets is None or reply.targets == (sender,):
                    back.append(reply)
                else:
                    self._send(reply, track=False)
            for reply in back:  # written to the sender before the acknowledgement
                self.sim.cluster.send(self.member, reply.kind, reply.payload, SendMode.ASYNC, [sender])

        return handle

    # -- membership and the timer -------------------------------------------------------------

    def _step(self) -> None:
        now = self.now()
        events = self.member.events[self._events_seen :]
        self._events_seen = len(self.member.events)
        for event in events:
            if isinstance(event, MemberJoined):  # Replicator.member_joined
                for message in self.manager.request_transfer([event.member], now):
                    self._send(message, track=False)
                self._rebalance()
            elif isinstance(event, MemberLeft):  # Replicator.member_left
                members = self.member.membership.members()
                for message in self.manager.member_left(event.member, members, now):
                    self._send(message, track=False)
                self._rebalance()
        self._advance_streams()
        self._collect()
        if self._rebalancing is not None:
            generation, sends = self._rebalancing
            if all(sent.outcome is not None for sent in sends):
                self._rebalancing = None
                if generation == self._rebalances:
                    self.manager.rebalanced()
        if self.sim.clock() >= self._next_timer:
            self._next_timer = self.sim.clock() + TIMER
            self._timer(now)

    def _rebalance(self) -> None:
        self._rebalances += 1
        messages = self.manager.rebalance(self.store.ids(), self.now())
        sends = [self._send_waited(message, SendMode.ACK, track=False) for message in messages]
        self._rebalancing = (self._rebalances, sends)

    def _timer(self, now: float) -> None:
        """``Node.sweep``: the store's sweep, then ``Replicator.tick``."""
        self.store.sweep(now)
        unsent, self.unsent = self.unsent, {}
        members = self.member.membership.members()
        live = {m.id for m in members}
        self.manager.tick(now)
        outgoing = self.manager.retry_transfer(members, now)
        outgoing.extend(self.manager.keepalive(self.store.in_use(), now))
        for member, session_ids in unsent.values():
            if member.id in live:
                for message in self.manager.resend(member, session_ids, now):
                    self._send_waited(message, SendMode.ACK, track=False)
        for message in outgoing:
            self._send(message, track=False)

    @property
    def busy(self) -> bool:
        return super().busy or self._rebalancing is not None or bool(self.unsent)

    # -- requests (Replicator.fetch, Node.load, Node.release) --------------------------------------

    def fetch(self, session_id: str, route: str | None) -> Sent | None:
        manager = self.manager
        members = self.member.membership.members()
        if not members:
            return None
        plan = fetch_targets(
            manager, self.store, session_id, manager.successor(session_id), route, self.info.route, members
        )
        if plan is None:
            return None
        session_id, targets = plan
        request = manager.fetch([session_id], targets)
        assert request.targets is not None
        request_id = self.sim.cluster.send(self.member, request.kind, request.payload, SendMode.SYNC, request.targets)
        sent = Sent("want", request_id, frozenset(t.id for t in request.targets), self.sim.cluster.clock())
        self._waiting.append(sent)
        self._collect()
        return sent

    def load(self, session_id: str | None, sent: list[Sent]) -> Session:
        now = self.now()
        session = None
        if session_id is not None:
            session = self.store.load(session_id, now)
            if session is None:
                successor = self.manager.successor(session_id)
                if successor is not None:
                    session = self.store.load(successor, now)
        if session is None:
            return self.store.new_session(now)
        self._pending = sent
        try:
            for message in self.manager.began(session, now):
                self._send(message, track=False)
        finally:
            self._pending = None
        return session

    def release(self, session: Session, sent: list[Sent]) -> bool:
        """Release; True when the release produced a delta."""
        self._pending = sent
        try:
            delta = self.store.release(session, self.now())
            if delta is None and session.id is not None:  # Replicator.accessed
                in_flight = self._in_flight.get(session.id)
                if in_flight is not None and in_flight.outcome is None and session.modified:
                    sent.append(in_flight)
                if session.accessed:
                    for message in self.manager.accessed(session, self.now()):
                        self._send(message)
        finally:
            self._pending = None
        return delta is not None


# -- the cluster ---------------------------------------------------------------------------------------


class BackupSim(ReplicationSim):
    """N members, each a :class:`BackupNode`, on a :class:`FifoCluster`."""

    node_class = BackupNode

    def __init__(
        self,
        size: int = 3,
        *,
        seed: int = 0,
        backups: int = 1,
        fifo: bool = True,
        offsets: Iterable[float] = (),
        step: float = 0.01,
        **options: Any,
    ) -> None:
        self.cluster = FifoCluster(seed=seed, fifo=fifo)
        self.policy = None
        self.options = {"backups": backups, **options}
        self.backups = backups
        self.step = step
        self.ids = (f"s{n}" for n in itertools.count(1))
        self.nodes = []
        self.dropped = set()
        self.errors: list[tuple[Any, ...]] = []
        self.requests: list[ClientRequest] = []
        self._routes = itertools.count(size + 1)
        offsets = list(offsets)
        for index in range(size):
            self.add(f"node{index + 1}", offsets[index] if index < len(offsets) else 0.0)

    def join(self) -> Node:
        """A new member, seeded on the running ones (the first member may have crashed)."""
        seeds = [node.info.address for node in self.running()]
        return self.add(f"node{next(self._routes)}", 0.0, seeds)

    def _stepped(self) -> None:
        for request in list(self.requests):
            request.advance()

    @property
    def idle(self) -> bool:
        return not self.requests and not any(node.busy for node in self.running())

    def settle(self, timeout: float = 60.0) -> None:
        """Until no request, send, rebalance or resend is under way, then past the managers'
        retry timers (``MISSING_RETRY``, unplaced copies), and until quiet again."""
        self.run_until(lambda: self.idle, timeout)
        self.run(12.0)
        self.run_until(lambda: self.idle, timeout)
        self.run(self.network.max_delay * 2 + self.step)


# -- requests ---------------------------------------------------------------------------------------------


@dataclass
class ClientRequest:
    """One request in flight: fetch, then (fetched or timed out, and ``delay`` later) load and act,
    then ``hold`` later release."""

    sim: BackupSim
    history: BackupHistory
    node: BackupNode
    kind: str
    lineage: int | None
    cookie: tuple[str, str | None] | None  # (id, route)
    key: str
    delay: float
    hold: float
    issued_at: float
    sent: list[Sent] = field(default_factory=list)
    fetch: Sent | None = None
    session: Session | None = None
    loaded: str | None = None
    effects: list[tuple[str, str, Any]] = field(default_factory=list)
    release_at: float = 0.0
    value: Any = None

    def start(self) -> None:
        if self.cookie is not None:
            self.fetch = self.node.fetch(*self.cookie)
        self.advance()

    def advance(self) -> None:
        now = self.sim.clock()
        if not self.node.running:
            self.sim.requests.remove(self)  # crashed mid-request: nothing more of it
            return
        if self.session is None:
            fetched = self.fetch is None or self.fetch.outcome is not None
            if not (fetched or now - self.issued_at >= SEND_TIMEOUT) or now - self.issued_at < self.delay:
                return
            self._load()
            self.release_at = now + self.hold
        if now >= self.release_at:
            self._release()

    def _load(self) -> None:
        session = self.node.load(self.cookie[0] if self.cookie else None, self.sent)
        self.session = session
        self.loaded = session.id
        self.node._pending = self.sent  # an invalidation sends its end at once, for this request
        try:
            self._act(session)
        finally:
            self.node._pending = None

    def _act(self, session: Session) -> None:
        act(session, self.kind, self.key, self.value, self.effects)

    def _release(self) -> None:
        assert self.session is not None
        self.sim.requests.remove(self)
        session = self.session
        self.node.release(session, self.sent)
        request = BackupRequest(self.node, Done(self.loaded, session.id, [], []), self.issued_at, self.sent)
        if self.effects:  # a write needs the copies of min(k, others) members to count
            request.needed = min(self.sim.backups, len(self.sim.running()) - 1)
        self.history.finished(self, request, session.id)


@dataclass
class BackupRequest(Request):
    """A request whose write counts as acknowledged only once its waited sends reached at least
    ``needed`` other members: a member that knew no other yet (just started, not joined) sends
    nothing, and its write is vacuously "acknowledged" with no copy anywhere else."""

    needed: int = 0

    @property
    def acknowledged(self) -> bool:
        reached = {member for sent in self.sent if sent.acknowledged for member in sent.expected}
        return super().acknowledged and len(reached) >= self.needed


class BackupHistory(History):
    """A :class:`History` of non-sticky requests, each carrying its client's cookie."""

    def __init__(self, sim: BackupSim) -> None:
        super().__init__(sim)
        self.cookies: dict[int, tuple[str, str | None]] = {}  # lineage -> the newest cookie
        self.misses: list[tuple[int, str]] = []  # (lineage, id): a cookie that opened a fresh session
        self.ended_ids: dict[int, str] = {}

    def issue(
        self, node: BackupNode, kind: str, pick: int, key: str, route: str | int, delay: float, hold: float
    ) -> None:
        """``kind`` on the ``pick``-th live session, sent to ``node`` with the session's cookie
        (its route: the member that served it last, or with ``route`` a number, that member's)."""
        sim: BackupSim = self.sim  # type: ignore[assignment]
        live = self.live()
        lineage = None
        cookie = None
        if kind != "new" and live:
            lineage = live[pick % len(live)]
            session_id, served = self.cookies[lineage]
            if route != "last":  # a client the balancer sent elsewhere, or another client's cookie
                served = sim.nodes[route % len(sim.nodes)].info.route
            cookie = (session_id, served)
        kind = "write" if kind == "new" or lineage is None else kind
        value = f"v{next(self._values)}"
        request = ClientRequest(sim, self, node, kind, lineage, cookie, key, delay, hold, sim.clock(), value=value)
        sim.requests.append(request)
        request.start()

    def finished(self, client: ClientRequest, request: Request, session_id: str | None) -> None:
        loaded, lineage = client.loaded, client.lineage
        if loaded is None:
            if lineage is not None and client.cookie is not None:
                self.misses.append((lineage, client.cookie[0]))
            if session_id is None:
                return
            self.lineages.append([session_id])
            lineage, loaded = len(self.lineages) - 1, session_id
        elif lineage is not None and loaded not in self.lineages[lineage]:
            # the cookie's id lost a concurrent rotation: served under the winner's id
            self.lineages[lineage].append(loaded)
        assert lineage is not None
        if session_id is None:
            self.ended.add(lineage)
            ops = [Op("end", lineage, None, loaded, request)]
            rotated = client.node.store.retired.get(loaded)
            if rotated is not None:
                self.lineages[lineage].append(rotated)
                self.rotated_and_ended.add(lineage)
        else:
            # A write whose session a concurrent request on the same member rotated meanwhile
            # is still a write (the rotation's own request records the rotation).
            ops = [Op(effect, lineage, name, written, request) for effect, name, written in client.effects]
            if session_id != loaded and session_id not in self.lineages[lineage]:
                self.lineages[lineage].append(session_id)
            if session_id != loaded and client.kind == "rotate":
                ops.append(Op("rotate", lineage, None, (loaded, session_id), request))
            ops = ops or [Op("read", lineage, client.key, None, request)]
            self.cookies[lineage] = (session_id, client.node.info.route)
        self.ops.extend(ops)

    # -- the checks --------------------------------------------------------------------------------------

    def placed_copies(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Each session's copies on its primary and the backups the primary names, by route.

        A member that holds a copy no placement of the primary names (a copy fetched for a
        request that did not mark the session accessed, so never took it over) is a *stray*:
        see :meth:`strays`.
        """
        placed: dict[str, dict[str, dict[str, Any]]] = {}
        for session_id, copies in self._held().items():
            owners = self._owners(session_id, copies)
            if len(owners) != 1:
                placed[session_id] = copies
                continue
            (owner,) = owners
            named = {owner.info.id, *owner.manager._placed[session_id].holders}
            placed[session_id] = {route: c for route, c in copies.items() if self._node(route).info.id in named}
        return placed

    def strays(self) -> dict[str, list[str]]:
        """Sessions held by members that neither own them nor back them up: id -> routes."""
        placed = self.placed_copies()
        return {
            session_id: sorted(set(copies) - set(placed[session_id]))
            for session_id, copies in self._held().items()
            if set(copies) - set(placed[session_id])
        }

    def _held(self) -> dict[str, dict[str, dict[str, Any]]]:
        held: dict[str, dict[str, dict[str, Any]]] = {}  # id -> route -> contents
        for node in self.sim.running():
            for session_id, attrs in node.sessions().items():
                held.setdefault(session_id, {})[node.info.route or ""] = attrs
        return held

    def _node(self, route: str) -> BackupNode:
        return next(node for node in self.sim.running() if node.info.route == route)  # type: ignore[return-value]

    def _owners(self, session_id: str, copies: dict[str, Any]) -> list[BackupNode]:
        """The holders that think they are the session's primary."""
        nodes = [self._node(route) for route in copies]
        return [n for n in nodes if (p := n.manager._placed.get(session_id)) is not None and p.owner == n.info.id]

    def problems(self, *, strays: bool = False) -> list[str]:
        """Everything wrong once the cluster settled (empty: all good); ``strays``: count stray
        copies (see :meth:`placed_copies`) as a problem too."""
        sim: BackupSim = self.sim  # type: ignore[assignment]
        running = sim.running()
        routes = {node.info.id: node.info.route for node in running}
        want = min(1 + sim.backups, len(running))
        skip = {i for n in self.excluded() for i in self.lineages[n]}
        held = self._held()
        placed = self.placed_copies()
        out = [f"handler raised: {error}" for error in sim.errors]
        for session_id, copies in sorted(held.items()):
            if session_id in skip:
                continue
            owners = self._owners(session_id, copies)
            if len(owners) != 1:
                out.append(
                    f"{session_id}: {len(owners)} primaries: {[o.info.route for o in owners]} of {sorted(copies)}"
                )
                continue
            owner = owners[0]
            named = owner.manager._placed[session_id]
            ours = placed[session_id]
            missing = [routes.get(h, h) for h in named.holders if routes.get(h) not in ours]
            if missing or len(ours) != want:
                out.append(
                    f"{session_id}: {len(ours)} placed copies, not {want}"
                    f" (primary {owner.info.route}, lacking {missing})"
                )
            if len({repr(sorted(c.items())) for c in ours.values()}) > 1:
                out.append(f"{session_id}: copies differ: {ours}")
            for route in ours:
                theirs = self._node(route).manager._placed.get(session_id)
                if theirs is None or theirs.owner != owner.info.id:
                    who = routes.get(theirs.owner, theirs.owner) if theirs is not None else None
                    out.append(f"{session_id}: backup {route} follows {who}, not {owner.info.route}")
            if strays:
                for route in sorted(set(copies) - set(ours)):
                    theirs = self._node(route).manager._placed.get(session_id)
                    who = routes.get(theirs.owner, theirs.owner) if theirs is not None else None
                    out.append(f"{session_id}: stray copy on {route} (follows {who})")
        out.extend(f"lost on {route}: {write.value!r} of {write.key} ({found})" for route, write, found in self.lost())
        for lineage in sorted(self.ended - self.excluded()):
            ends = [op for op in self.ops if op.lineage == lineage and op.kind == "end" and op.request.acknowledged]
            if ends:
                back = sorted(i for i in self.lineages[lineage] if i in held)
                if back:
                    out.append(f"ended lineage {lineage} held again: {back}")
        return out

    def lost(self) -> list[tuple[str, Op, Any]]:
        """A surviving write (see ``must_survive``) missing from a placed copy, or held nowhere."""
        retired = self.retired()
        excluded = self.excluded()
        missing = []
        by_route: dict[str, dict[str, dict[str, Any]]] = {}
        for session_id, copies in self.placed_copies().items():
            for route, attrs in copies.items():
                by_route.setdefault(route, {})[session_id] = attrs
        for write in self.must_survive():
            if write.lineage in excluded:
                continue
            candidates = [i for i in self.lineages[write.lineage] if i not in retired]
            holders = 0
            for route, held in sorted(by_route.items()):
                found = [held[i].get(write.key, _ABSENT) for i in candidates if i in held]
                if not found:
                    continue
                holders += 1
                if write.value not in found:
                    missing.append((route, write, found))
            if not holders:
                missing.append(("nowhere", write, candidates))
        return missing


_ABSENT = "<absent>"


# -- schedules ---------------------------------------------------------------------------------------------

#: Network faults per profile; "crash" and "join" also crash members, "join" adds some.
PROFILES: dict[str, dict[str, Any]] = {
    "delays": {"fifo": True, "duplicate": 0.0, "max_delay": 0.08},
    "duplicates": {"fifo": True, "duplicate": 0.3, "max_delay": 0.05},
    "crash": {"fifo": True, "duplicate": 0.0, "max_delay": 0.05},
    "join": {"fifo": True, "duplicate": 0.0, "max_delay": 0.05},
    "reorder": {"fifo": False, "duplicate": 0.2, "max_delay": 0.08},
}

OFFSETS = (0.0, 86_400.0, -900.0, 5.0, 333.0)  # unrelated monotonic clocks

KINDS_OF_STEP = ["write", "write", "write", "append", "delete", "invalidate", "rotate", "read", "read", "new"]


@dataclass
class Schedule:
    """A random schedule, as data (so it can be shrunk): rounds of steps and membership events."""

    profile: str
    seed: int
    members: int
    backups: int
    rounds: list[tuple[list[tuple[Any, ...]], float]]  # steps (kind, member, pick, key, route, delay, hold), gap
    events: list[tuple[int, str, int]]  # (round, "crash" | "join", member)


def generate(profile: str, seed: int) -> Schedule:
    rng = random.Random(f"{profile}-{seed}")
    members = rng.randint(3, 5)
    backups = rng.choice([1, 2])
    rounds = []
    for _ in range(rng.randint(3, 12)):
        steps = [
            (
                rng.choice(KINDS_OF_STEP),
                rng.randrange(8),
                rng.randrange(4),
                rng.choice("abc"),
                rng.randrange(8) if rng.random() < 0.25 else "last",
                rng.choice([0.0, 0.0, 0.005, 0.02]),
                rng.choice([0.0, 0.0, 0.01, 0.05]),
            )
            for _ in range(rng.randint(1, 4))
        ]
        rounds.append((steps, rng.choice([0.0, 0.005, 0.02, 0.05, 0.3])))
    events: list[tuple[int, str, int]] = []
    if profile in ("crash", "join"):
        for _ in range(rng.randint(1, backups)):
            events.append((rng.randrange(len(rounds)), "crash", rng.randrange(8)))
    if profile == "join":
        for _ in range(rng.randint(1, 2)):
            events.append((rng.randrange(len(rounds)), "join", 0))
    events.sort()
    return Schedule(profile, seed, members, backups, rounds, events)


def run(schedule: Schedule) -> BackupHistory:
    """Run a schedule, then stop the faults and let the cluster settle."""
    faults = PROFILES[schedule.profile]
    sim = BackupSim(
        schedule.members, seed=schedule.seed, backups=schedule.backups, fifo=faults["fifo"], offsets=OFFSETS
    )
    sim.form()
    history = BackupHistory(sim)
    sim.network.faults(duplicate=faults["duplicate"], min_delay=0.001, max_delay=faults["max_delay"])
    crashed = 0
    for index, (steps, gap) in enumerate(schedule.rounds):
        for _, event, who in (e for e in schedule.events if e[0] == index):
            running = sim.running()
            if event == "crash" and crashed < schedule.backups and len(running) > 1:
                sim.crash(running[who % len(running)])
                crashed += 1
            elif event == "join":
                sim.join()
        for kind, who, pick, key, route, delay, hold in steps:
            running = sim.running()
            history.issue(running[who % len(running)], kind, pick, key, route, delay, hold)  # type: ignore[arg-type]
        sim.run(gap)
    sim.run_until(lambda: not sim.requests, 30.0)
    sim.network.faults()
    sim.form()
    sim.settle()
    return history


def shrink(schedule: Schedule, fails: Callable[[Schedule], bool]) -> Schedule:
    """A smaller schedule that still ``fails``: rounds, events, then steps removed one at a
    time while it still fails, then fewer members and shorter gaps, delays and holds."""
    import copy

    def attempt(candidate: Schedule) -> bool:
        try:
            return fails(candidate)
        except Exception:
            return False

    changed = True
    while changed:
        changed = False
        for index in range(len(schedule.rounds) - 1, -1, -1):
            candidate = copy.deepcopy(schedule)
            del candidate.rounds[index]
            last = max(0, len(candidate.rounds) - 1)
            candidate.events = [(min(r - (r > index), last), e, m) for r, e, m in candidate.events]
            if candidate.rounds and attempt(candidate):
                schedule, changed = candidate, True
        for index in range(len(schedule.events) - 1, -1, -1):
            candidate = copy.deepcopy(schedule)
            del candidate.events[index]
            if attempt(candidate):
                schedule, changed = candidate, True
        for r in range(len(schedule.rounds)):
            for s in range(len(schedule.rounds[r][0]) - 1, -1, -1):
                if len(schedule.rounds[r][0]) < 2:
                    break
                candidate = copy.deepcopy(schedule)
                del candidate.rounds[r][0][s]
                if attempt(candidate):
                    schedule, changed = candidate, True
        if schedule.members > 3:
            candidate = copy.deepcopy(schedule)
            candidate.members -= 1
            if attempt(candidate):
                schedule, changed = candidate, True
        if schedule.backups > 1:
            candidate = copy.deepcopy(schedule)
            candidate.backups -= 1
            if attempt(candidate):
                schedule, changed = candidate, True
        for r in range(len(schedule.rounds)):
            steps, gap = schedule.rounds[r]
            if gap:
                candidate = copy.deepcopy(schedule)
                candidate.rounds[r] = (steps, 0.0)
                if attempt(candidate):
                    schedule, changed = candidate, True
            for s, step in enumerate(steps):
                if step[5] or step[6] or step[4] != "last":
                    candidate = copy.deepcopy(schedule)
                    candidate.rounds[r][0][s] = (*step[:4], "last", 0.0, 0.0)
                    if attempt(candidate):
                        schedule, changed = candidate, True
    return schedule
