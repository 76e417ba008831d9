"""``backup.py messages``: replication traffic per write as a cluster grows, counted without any I/O.

The managers are sans-IO, so the traffic a write causes can be counted exactly, with
nothing else on the machine mattering: each member here is a :class:`SessionStore`
and its manager, and :class:`Sim` delivers every :class:`Outgoing` at once, in order,
to each of its targets (None: every other member), the way ``node/replicator.py``
sends them, including the replies a receiver returns. A request takes the node's
path: the fetch ``Replicator.fetch`` would send first (:func:`fetch_targets` mirrors
its choice), load or create, the app's change, release, then ``replicate_all`` for the
delta or ``accessed`` when nothing changed.

Counted per write: data messages, one per target (the channel's ACKs are not), and
bytes, ``len(msgpack.packb(payload))`` per target (the payload only: the frame's
header, kind and HMACs add a fixed amount per message, compression is off by default).
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from _cluster import session_values
from _harness import print_table, settings

from replisession.core.backup import BackupManager
from replisession.core.delta import SessionDelta
from replisession.core.messages import MemberInfo
from replisession.core.replication import DeltaManager, Outgoing
from replisession.core.session import Session
from replisession.core.store import SessionStore

__all__ = ["VARIANTS", "messages"]

# name -> (manager, backups, sticky)
VARIANTS: dict[str, tuple[str, int, bool]] = {
    "delta": ("delta", 0, True),
    "backup k=1": ("backup", 1, True),
    "backup k=2": ("backup", 2, True),
    "delta, non-sticky": ("delta", 0, False),
    "backup k=1, non-sticky": ("backup", 1, False),
    "backup k=2, non-sticky": ("backup", 2, False),
}


@dataclass
class Member:
    info: MemberInfo
    store: SessionStore
    manager: DeltaManager
    sunk: list[SessionDelta] = field(default_factory=list)


class Sim:
    """Members on one synchronous, lossless network; every data message counted from :meth:`count` on."""

    def __init__(self, size: int, manager: str, backups: int) -> None:
        self.now = 100.0
        self.members: list[Member] = []
        self.counting = False
        self.sent: Counter[str] = Counter()  # kind -> messages (one per target)
        self.bytes: Counter[str] = Counter()  # kind -> payload bytes (per target)
        for number in range(1, size + 1):
            info = MemberInfo(f"node{number}", f"10.0.1.{number}", 4000, f"{number:032x}")
            store = SessionStore()
            member = Member(info, store, DeltaManager(store, info))
            if manager == "backup":
                member.manager = BackupManager(store, info, backups=backups)
            store.change_sink = member.sunk.append  # what Node.start does: changes are tracked
            self.members.append(member)
        for member in self.members:  # everyone meets everyone, as after start-up (empty stores)
            others = [m.info for m in self.members if m is not member]
            self.deliver(member, member.manager.request_transfer(others, self.now))
        for member in self.members:
            self.deliver(member, member.manager.rebalance(member.store.ids(), self.now))
            member.manager.rebalanced()  # as the node does after its pass: joiners are told once, not forever

    def crash(self, victim: Member) -> None:
        """``victim`` is gone (SIGKILL): every survivor drops it, then re-places its sessions."""
        self.members.remove(victim)
        for member in self.members:
            others = [m.info for m in self.members if m is not member]
            self.deliver(member, member.manager.member_left(victim.info, others, self.now))
        for member in self.members:
            self.deliver(member, member.manager.rebalance(member.store.ids(), self.now))
            member.manager.rebalanced()  # as the node does after its pass: joiners are told once, not forever

    def count(self) -> None:
        self.counting = True
        self.sent.clear()
        self.bytes.clear()

    def deliver(self, sender: Member, outgoing: list[Outgoing]) -> None:
        queue = [(sender, message) for message in outgoing]
        while queue:
            source, message = queue.pop(0)
            if message.targets is None:
                targets = [m for m in self.members if m is not source]
            else:
                wanted = {t.id for t in message.targets}
                targets = [m for m in self.members if m.info.id in wanted]
            if self.counting and targets:
                kind = message.kind
                if kind == "sessions" and not message.payload["sessions"]:
                    kind = "sessions (none)"  # a fetch's answer from a member without a copy
                self.sent[kind] += len(targets)
                self.bytes[kind] += len(msgpack.packb(message.payload)) * len(targets)
            for target in targets:
                replies = target.manager.receive(source.info, message.kind, message.payload, self.now)
                queue.extend((target, reply) for reply in replies)

    def request(
        self, server: Member, session_id: str | None, route: str | None, action: Callable[[Session], Any]
    ) -> str:
        """One request on ``server`` with a cookie for ``session_id`` routed to ``route``; the id after it."""
        self.now += 0.01
        if session_id is not None:
            targets = fetch_targets(server, session_id, route, [m.info for m in self.members if m is not server])
            if targets:
                self.deliver(server, [server.manager.fetch([session_id], targets)])
        session = server.store.load(session_id, self.now) if session_id is not None else None
        if session is None:
            if session_id is not None:
                raise RuntimeError(f"{server.info.route} cannot serve session {session_id}: a copy is missing")
            session = server.store.new_session(self.now)
        action(session)
        returned = server.store.release(session, self.now)
        deltas, server.sunk[:] = list(server.sunk), []
        outgoing = [message for delta in deltas for message in server.manager.replicate_all(delta, self.now)]
        if returned is None:
            outgoing.extend(server.manager.accessed(session, self.now))
        self.deliver(server, outgoing)
        assert session.id is not None
        return session.id

    def copies(self, session_id: str) -> list[Any]:
        """Every member's value of ``n`` for the session, read without unpacking anything."""
        found = []
        for member in self.members:
            dormant = member.store.dormant(session_id)
            if dormant is not None:
                packed = msgpack.unpackb(dormant.data[1])
                found.append(member.store.serializer.loads(packed[3]).get("n"))
            elif (session := member.store.live(session_id)) is not None:
                found.append(dict.get(session, "n"))
        return found


def fetch_targets(server: Member, session_id: str, route: str | None, others: list[MemberInfo]) -> list[MemberInfo]:
    """Whom ``Replicator.fetch`` asks for the session before the request (none: no fetch)."""
    manager, store = server.manager, server.store
    if manager.is_dead(session_id) or not others:
        return []
    same_route = [m for m in others if route is not None and m.route == route]
    if manager.locates and store.peek(session_id) is None:
        return others  # copies are on a few members: ask them all
    if store.peek(session_id) is not None:
        if route == server.info.route or not same_route:
            return []
        return same_route  # the member that served it last may have newer writes
    return same_route or others


def measure(size: int, variant: str, sessions: int, writes: int) -> dict[str, Any]:
    """``writes`` writes spread over ``sessions`` sessions (one attribute changed per write)."""
    manager, backups, sticky = VARIANTS[variant]
    sim = Sim(size, manager, backups)
    ids, routes, servers = [], [], []
    for i in range(sessions):  # each created on a member in turn, which is its primary
        server = sim.members[i % size]
        ids.append(sim.request(server, None, None, lambda s, i=i: s.update(session_values(i))))
        routes.append(server.info.route)
        servers.append(i % size)
    turns = itertools.count(1)
    current: dict[int, int] = {}  # the last value of n written, per session

    def one_write(index: int) -> None:
        if not sticky:
            servers[index] = (servers[index] + 1) % size  # the next member in turn
        server = sim.members[servers[index]]
        value = current[index] = next(turns)
        ids[index] = sim.request(server, ids[index], routes[index], lambda s: s.__setitem__("n", value))
        routes[index] = server.info.route  # the response re-routes the cookie to its server

    for index in range(sessions):  # warm-up: each session written once where the pattern puts it
        one_write(index)
    sim.count()
    for w in range(writes):
        one_write(w % sessions)
    want = min(size, 1 + backups) if manager == "backup" else size
    copies_ok = all(sim.copies(ids[i]) == [current[i]] * want for i in range(sessions))
    return {
        "messages_per_write": sum(sim.sent.values()) / writes,
        "bytes_per_write": sum(sim.bytes.values()) / writes,
        "by_kind": {kind: {"messages": n / writes, "bytes": sim.bytes[kind] / writes} for kind, n in sim.sent.items()},
        "copies_ok": copies_ok,
        "copies_per_session": want,
    }


def after_death(size: int, backups: int, sessions: int) -> dict[str, Any]:
    """The first member makes ``sessions`` sessions (their primary), then dies: the traffic of the restore."""
    sim = Sim(size, "backup", backups)
    primary = sim.members[0]
    ids = [sim.request(primary, None, None, lambda s, i=i: s.update(session_values(i))) for i in range(sessions)]
    sim.count()
    sim.crash(primary)
    want = min(len(sim.members), 1 + backups)
    return {
        "messages_per_session": sum(sim.sent.values()) / sessions,
        "bytes_per_session": sum(sim.bytes.values()) / sessions,
        "by_kind": {kind: n / sessions for kind, n in sim.sent.items()},
        "copies_ok": all(len(sim.copies(i)) == want for i in ids),
    }


def messages(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== messages: {args.writes} writes over {args.sessions} sessions of 5 small attributes (one attribute "
        f"changed per write), members {args.sizes[0]}-{args.sizes[-1]}, managers driven in memory",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        for variant in VARIANTS:
            if VARIANTS[variant][1] >= size:
                continue  # k backups need k + 1 members
            results.setdefault(str(size), {})[variant] = measure(size, variant, args.sessions, args.writes)
    variants = list(VARIANTS)
    for metric, label, fmt in (
        ("messages_per_write", "messages per write (one per target)", "{:.2f}"),
        ("bytes_per_write", "payload bytes per write (msgpack, per target)", "{:,.0f}"),
    ):
        rows = []
        for size, by_variant in results.items():
            cells = [fmt.format(by_variant[v][metric]) if v in by_variant else "-" for v in variants]
            rows.append((size, *cells))
        print_table(label, ("members", *variants), rows)
    widest = str(max(args.sizes))
    rows = []
    for variant, result in results[widest].items():
        kinds = ", ".join(
            f"{k} {v['messages']:.2f} ({v['bytes']:,.0f} B)" for k, v in sorted(result["by_kind"].items())
        )
        rows.append((variant, kinds))
    print_table(f"by kind, {widest} members (per write)", ("variant", "messages (bytes)"), rows, left=2)
    bad = [f"{s}/{v}" for s, r in results.items() for v, x in r.items() if not x["copies_ok"]]
    print(
        "\nEvery session's copies afterwards: "
        + ("each one on 1 + k members (delta: every member), all with the last write" if not bad else f"WRONG in {bad}")
    )
    print(
        "non-sticky: each write of a session on the next member in turn, its cookie routed to the previous one; "
        "it includes the fetch ('want' and the 'sessions' replies; 'sessions (none)': from a member without a "
        "copy), the full copies to new backups and the placements. Messages: one per target; ACKs not counted. "
        "Bytes: the payload only."
    )
    deaths: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        for backups in (1, 2):
            if size >= backups + 2:  # k + 1 survivors, so 1 + k copies are possible again
                deaths.setdefault(str(size), {})[f"k={backups}"] = after_death(size, backups, args.sessions * 20)
    rows = []
    for size, by_k in deaths.items():
        cells = []
        for k in ("k=1", "k=2"):
            r = by_k.get(k)
            kinds = ", ".join(f"{kind} {n:.2f}" for kind, n in sorted(r["by_kind"].items())) if r else ""
            cells += [
                f"{r['messages_per_session']:.2f} ({kinds})" if r else "-",
                f"{r['bytes_per_session']:,.0f}" if r else "-",
            ]
        rows.append((size, *cells))
    print_table(
        f"restoring 1 + k copies after the death of the primary of {args.sessions * 20:,} sessions, per session",
        ("members", "k=1 messages", "k=1 bytes", "k=2 messages", "k=2 bytes"),
        rows,
        left=2,
    )
    bad = [f"{s}/{k}" for s, r in deaths.items() for k, x in r.items() if not x["copies_ok"]]
    print("Afterwards every session on 1 + k survivors: " + ("yes" if not bad else f"NO in {bad}"))
    return {"settings": settings(args), "results": results, "after_death": deaths}
