"""Public test helpers: a fake clock and an in-memory network of cluster members.

Everything here is deterministic: time moves only when told to, and every random
choice (delays, drops, duplicates) comes from one seeded generator, so a failing
schedule replays exactly.

* :class:`FakeClock`: pass ``clock=FakeClock()`` to any adapter and ``advance()``
  it instead of sleeping.
* :class:`SimCluster`: members running the real membership and channel state
  machines (``replisession.core``) over an :class:`InMemoryNetwork` that can
  drop, delay, duplicate and reorder messages, partition members and heal,
  crash (SIGKILL-like: sockets close), hang (sockets stay open) and restart them.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .core.channel import Channel, Delivery, SendOutcome
from .core.membership import (
    Connect,
    Disconnect,
    Effect,
    MemberJoined,
    MemberLeft,
    Membership,
    MemberSuspected,
    Probe,
    SendTo,
)
from .core.messages import Ack, Data, MemberInfo, Message, SendMode

__all__ = ["FakeClock", "InMemoryNetwork", "SimCluster", "SimMember"]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError("a monotonic clock cannot go back")
        self._now = now


Handler = Callable[["SimMember", MemberInfo, Any], None]


@dataclass
class SimMember:
    """One cluster member in the simulation: real core state machines, simulated I/O."""

    info: MemberInfo
    membership: Membership
    cluster: str
    secret: bytes
    channel: Channel = field(default_factory=Channel)
    handlers: dict[str, Handler] = field(default_factory=dict)
    events: list[Effect] = field(default_factory=list)
    outcomes: dict[int, SendOutcome] = field(default_factory=dict)
    received: list[tuple[MemberInfo, str, Any]] = field(default_factory=list)
    refusals: list[tuple[tuple[str, int], str]] = field(default_factory=list)
    crashed: bool = False
    hung: bool = False

    @property
    def route(self) -> str | None:
        return self.info.route

    def member_routes(self) -> set[str | None]:
        return {m.route for m in self.membership.members()}

    @property
    def running(self) -> bool:
        return not self.crashed and not self.hung


class InMemoryNetwork:
    """Delivers messages between :class:`SimMember`s with seeded faults.

    Links are connections: a member can send only over a link the handshake
    established (same cluster name and secret). ``drop``, ``duplicate`` and a
    random ``delay`` in ``[min_delay, max_delay]`` (which reorders) apply to every
    message; a partition drops everything between groups and fails probes across.
    """

    def __init__(self, clock: FakeClock, *, seed: int = 0) -> None:
        self.clock = clock
        self.random = random.Random(seed)
        self.drop = 0.0
        self.duplicate = 0.0
        self.min_delay = 0.001
        self.max_delay = 0.001
        self._groups: list[set[str]] | None = None
        self._links: set[frozenset[str]] = set()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    # -- faults ------------------------------------------------------------------------

    def faults(
        self, *, drop: float = 0.0, duplicate: float = 0.0, min_delay: float = 0.001, max_delay: float = 0.001
    ) -> None:
        if not (0 <= drop < 1 and 0 <= duplicate < 1 and 0 < min_delay <= max_delay):
            raise ValueError("drop and duplicate are probabilities below 1, delays positive and ordered")
        self.drop, self.duplicate, self.min_delay, self.max_delay = drop, duplicate, min_delay, max_delay

    def partition(self, *groups: Iterable[SimMember]) -> None:
        """Cut the network into groups; members in no group are alone."""
        self._groups = [{m.info.id for m in group} for group in groups]

    def heal(self) -> None:
        self._groups = None

    def reachable(self, a: SimMember, b: SimMember) -> bool:
        if self._groups is None:
            return True
        return any(a.info.id in group and b.info.id in group for group in self._groups)

    # -- scheduling ----------------------------------------------------------------------

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.clock() + delay, next(self._order), action))

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def run_due(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, _, action = heapq.heappop(self._queue)
            action()

    def delay(self) -> float:
        return self.random.uniform(self.min_delay, self.max_delay)

    # -- links -------------------------------------------------------------------------

    def linked(self, a: SimMember, b: SimMember) -> bool:
        return frozenset((a.info.id, b.info.id)) in self._links

    def link(self, a: SimMember, b: SimMember) -> None:
        self._links.add(frozenset((a.info.id, b.info.id)))

    def unlink(self, a: SimMember, b: SimMember) -> bool:
        key = frozenset((a.info.id, b.info.id))
        if key in self._links:
            self._links.discard(key)
            return True
        return False


class SimCluster:
    """An N-member cluster on an in-memory network with a fake clock."""

    def __init__(
        self,
        size: int = 0,
        *,
        seed: int = 0,
        heartbeat_interval: float = 0.5,
        drop_time: float = 3.0,
        send_timeout: float = 3.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.network = InMemoryNetwork(self.clock, seed=seed)
        self.heartbeat_interval = heartbeat_interval
        self.drop_time = drop_time
        self.send_timeout = send_timeout
        self.members: list[SimMember] = []
        self._by_address: dict[tuple[str, int], SimMember] = {}
        self._ids = random.Random(seed + 1)
        for index in range(size):
            self.add_member(f"node{index + 1}")

    # -- membership of the simulation ------------------------------------------------------

    def address_of(self, index: int) -> tuple[str, int]:
        return ("10.0.0.1", 4000 + index)

    def add_member(
        self,
        route: str,
        *,
        seeds: Iterable[tuple[str, int]] | None = None,
        cluster: str = "replisession",
        secret: bytes = b"",
        address: tuple[str, int] | None = None,
    ) -> SimMember:
        """A new member; by default it seeds on the first member's address."""
        if address is None:
            address = next(a for a in map(self.address_of, itertools.count()) if a not in self._by_address)
        elif address in self._by_address and not self._by_address[address].crashed:
            raise ValueError(f"{address} belongs to a running member")
        host, port = address
        info = MemberInfo(route, host, port, f"{self._ids.getrandbits(128):032x}")
        seeds = list(seeds) if seeds is not None else [self.address_of(0)]
        membership = Membership(info, seeds=seeds, heartbeat_interval=self.heartbeat_interval, drop_time=self.drop_time)
        member = SimMember(info, membership, cluster, secret)
        self.members.append(member)
        self._by_address[info.address] = member
        return member

    def crash(self, member: SimMember) -> None:
        """SIGKILL: the process is gone and the kernel closes its sockets."""
        member.crashed = True
        for other in self.members:
            if other is not member and self.network.unlink(member, other) and other.running:
                self._notify_disconnect(other, member)

    def hang(self, member: SimMember) -> None:
        """SIGSTOP: silent, but its kernel still accepts connections (probes succeed)."""
        member.hung = True

    def stop(self, member: SimMember) -> None:
        """Graceful shutdown: LEAVE to everyone, then the process exits."""
        self._apply(member, member.membership.leave())
        self.network.schedule(self.network.max_delay * 2, lambda: self._exit(member))

    def _exit(self, member: SimMember) -> None:
        member.crashed = True
        for other in self.members:
            if other is not member and self.network.unlink(member, other) and other.running:
                self._apply(other, other.membership.disconnected(member.info.id, self.clock()))

    def restart(self, member: SimMember) -> SimMember:
        """A crashed member's process starts again: same route and address, new incarnation."""
        if not member.crashed:
            self.crash(member)
        self.members.remove(member)
        del self._by_address[member.info.address]
        return self.add_member(
            member.info.route or "",
            seeds=member.membership.seeds,
            cluster=member.cluster,
            secret=member.secret,
            address=member.info.address,
        )

    # -- running ----------------------------------------------------------------------

    def run_for(self, seconds: float, step: float | None = None) -> None:
        """Advance simulated time, delivering messages and ticking every member."""
        step = step or self.heartbeat_interval / 5
        end = self.clock() + seconds
        while self.clock() < end:
            target = min(end, self.clock() + step)
            due = self.network.next_due()
            while due is not None and due <= target:
                self.clock.set(max(self.clock(), due))
                self.network.run_due(self.clock())
                due = self.network.next_due()
            self.clock.set(target)
            for member in list(self.members):
                if member.running:
                    now = self.clock()
                    self._apply(member, member.membership.tick(now))
                    for outcome in member.channel.tick(now):
                        member.outcomes[outcome.request_id] = outcome

    def run_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> float:
        """Run until ``condition()`` holds; returns the simulated seconds it took."""
        start = self.clock()
        step = self.heartbeat_interval / 5
        while not condition():
            if self.clock() - start > timeout:
                raise TimeoutError(f"condition not reached within {timeout} simulated seconds")
            self.run_for(step, step)
        return self.clock() - start

    def converged(self) -> bool:
        """Every running member sees exactly the other running members."""
        running = [m for m in self.members if m.running]
        for member in running:
            expected = {m.info.id for m in running if m is not member}
            if {m.id for m in member.membership.members()} != expected:
                return False
        return True

    def send(
        self,
        sender: SimMember,
        kind: str,
        payload: Any,
        mode: SendMode = SendMode.SYNC,
        targets: Iterable[MemberInfo] | None = None,
    ) -> int:
        """Send DATA from ``sender``; the outcome lands in ``sender.outcomes[request_id]``."""
        targets = list(targets) if targets is not None else sender.membership.members()
        request_id, data, outcome = sender.channel.send(targets, kind, payload, mode, self.clock(), self.send_timeout)
        if outcome is not None:
            sender.outcomes[request_id] = outcome
        for target in targets:
            self._apply(sender, [SendTo(target, data)])
        return request_id

    # -- effects ----------------------------------------------------------------------

    def _apply(self, member: SimMember, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendTo):
                self._send(member, effect.member, effect.message)
            elif isinstance(effect, Connect):
                self._dial(member, effect.address)
            elif isinstance(effect, Probe):
                self._probe(member, effect.member)
            elif isinstance(effect, Disconnect):
                self._disconnect(member, effect.member)
            else:
                member.events.append(effect)
                if isinstance(effect, MemberLeft):
                    for outcome in member.channel.member_gone(effect.member):
                        member.outcomes[outcome.request_id] = outcome
                elif not isinstance(effect, MemberJoined | MemberSuspected):  # pragma: no cover
                    raise AssertionError(f"unknown effect {effect!r}")

    def _target(self, info: MemberInfo) -> SimMember | None:
        member = self._by_address.get(info.address)
        return member if member is not None and member.info.id == info.id else None

    def _send(self, sender: SimMember, to: MemberInfo, message: Message) -> None:
        target = self._target(to)
        if target is None or not self.network.linked(sender, target):
            return
        net = self.network
        copies = 0 if net.random.random() < net.drop else 1
        if copies and net.random.random() < net.duplicate:
            copies = 2
        for _ in range(copies):
            net.schedule(self._delay(sender, target), lambda: self._deliver(sender, target, message))

    def _delay(self, sender: SimMember, target: SimMember) -> float:
        """How long this message takes from ``sender`` to ``target`` (a subclass may keep links
        in order, as TCP does)."""
        return self.network.delay()

    def _deliver(self, sender: SimMember, target: SimMember, message: Message) -> None:
        if not target.running or not self.network.linked(sender, target):
            return
        if not self.network.reachable(sender, target):
            return
        now = self.clock()
        if isinstance(message, Data):
            delivery, ack = target.channel.received(sender.info, message)
            self._handle(target, delivery)
            if ack is not None:
                self._send(target, sender.info, ack)
        elif isinstance(message, Ack):
            for outcome in target.channel.acknowledged(sender.info, message):
                target.outcomes[outcome.request_id] = outcome
        self._apply(target, target.membership.received(sender.info.id, message, now))

    def _handle(self, target: SimMember, delivery: Delivery) -> None:
        data = delivery.message
        target.received.append((delivery.sender, data.kind, data.payload))
        handler = target.handlers.get(data.kind)
        error = None
        if handler is not None:
            try:
                handler(target, delivery.sender, data.payload)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if delivery.needs_ack:
            sender = self._target(delivery.sender)
            if sender is not None:
                self._send(target, sender.info, Channel.applied(delivery, error))

    def _dial(self, dialer: SimMember, address: tuple[str, int]) -> None:
        net = self.network
        target = self._by_address.get(address)

        def handshake_timed_out() -> None:
            if dialer.running:
                self._apply(dialer, dialer.membership.dial_failed(address, self.clock()))

        def outcome() -> None:
            if not dialer.running:
                return
            now = self.clock()
            if target is None or target.crashed or not net.reachable(dialer, target) or target is dialer:
                self._apply(dialer, dialer.membership.dial_failed(address, now, refused=target is dialer))
                return
            if target.hung:
                # The connect succeeds at the kernel; the handshake times out.
                net.schedule(self.send_timeout, handshake_timed_out)
                return
            if target.secret != dialer.secret or target.cluster != dialer.cluster:
                reason = "authentication failed" if target.secret != dialer.secret else "cluster name differs"
                dialer.refusals.append((address, reason))
                target.refusals.append((dialer.info.address, reason))
                self._apply(dialer, dialer.membership.dial_failed(address, now, refused=True))
                return
            net.link(dialer, target)
            self._apply(dialer, dialer.membership.connected(target.info, now))
            self._apply(target, target.membership.connected(dialer.info, now))

        net.schedule(net.delay() * 2, outcome)

    def _probe(self, prober: SimMember, member: MemberInfo) -> None:
        target = self._target(member)
        alive = target is not None and not target.crashed and self.network.reachable(prober, target)

        def answer() -> None:
            if prober.running:
                self._apply(prober, prober.membership.probe_result(member.id, alive, self.clock()))

        self.network.schedule(self.network.delay() * 2, answer)

    def _disconnect(self, member: SimMember, peer: MemberInfo) -> None:
        target = self._target(peer)
        if target is not None and self.network.unlink(member, target) and target.running:
            self._notify_disconnect(target, member)

    def _notify_disconnect(self, member: SimMember, gone: SimMember) -> None:
        """``member`` learns its connection to ``gone`` closed, if the news can reach it
        (across a partition a closed socket is noticed only by failure detection)."""
        if not self.network.reachable(member, gone):
            return

        def notify() -> None:
            if member.running:
                self._apply(member, member.membership.disconnected(gone.info.id, self.clock()))

        self.network.schedule(self.network.delay(), notify)
