"""A synchronous cluster of BackupManagers for the tests: delivery at once, in order.

A request on a member that holds no copy first fetches it from every member, messages
go to their targets in order (each connection is FIFO), and after every join or death
each member re-places its sessions (``rebalance``), the way ``node/replicator.py``
drives the real managers. ``lose`` makes chosen sends fail (the message never arrives;
replies are never lost), ``now`` is the clock every manager is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from replisession.core.backup import BackupManager
from replisession.core.messages import MemberInfo
from replisession.core.replication import Outgoing
from replisession.core.session import Session

from .replication_sim import Replica

NOW = 100.0


def member(number: int, host: str = "10.0.0.1") -> MemberInfo:
    return MemberInfo(f"node{number}", host, 4000 + number, f"{number:032x}")


class Cluster:
    """Members with BackupManagers, delivering every message at once, in order."""

    def __init__(self, size: int, backups: int = 1, hosts: int | None = None) -> None:
        self.backups = backups
        self.ids: Iterator[str] = (f"s{n}" for n in itertools.count(1))
        self.members: dict[str, Replica] = {}
        self.messages: list[tuple[str, str, str]] = []  # (sender, kind, target) of everything sent
        self._numbers = itertools.count(1)
        self.cut: list[set[str]] | None = None  # a partition: the ids on each side
        self.now = NOW
        # A failed send: (sender, message, target) -> True when that target never gets it.
        self.lose: Callable[[Replica, Outgoing, MemberInfo], bool] | None = None
        self.lose_asks = False  # True: a holder's ask for a copy it lacks (a reply) fails too
        self._hosts = hosts
        for _ in range(size):
            self.join()

    def join(self) -> Replica:
        number = next(self._numbers)
        host = f"10.0.0.{number % self._hosts + 1}" if self._hosts else f"10.0.1.{number}"
        replica = Replica(member(number, host), self.ids, manager=BackupManager, backups=self.backups)
        for other in self.members.values():
            if self.cut is None or other.info.id in self.cut[0]:  # a newcomer joins the first side
                other.manager.request_transfer([replica.info], self.now)
                replica.manager.request_transfer([other.info], self.now)
        self.members[replica.info.id] = replica
        if self.cut is not None:
            self.cut[0].add(replica.info.id)
        self.rebalance()
        return replica

    def crash(self, *replicas: Replica) -> None:
        for replica in replicas:
            del self.members[replica.info.id]
            if self.cut is not None:
                self.cut[0].discard(replica.info.id)
                self.cut[1].discard(replica.info.id)
        others = [m.info for m in self.members.values()]
        for survivor in list(self.members.values()):
            for replica in replicas:  # what a survivor sends on a death (the node sends it too)
                self.deliver(survivor, survivor.manager.member_left(replica.info, others, self.now))
        self.rebalance()

    def partition(self, side: list[Replica]) -> None:
        """``side`` and the rest stop hearing each other: each sees the others leave."""
        ours = {r.info.id for r in side}
        self.cut = [ours, set(self.members) - ours]
        for a in self.members.values():
            for b in self.members.values():
                if not self.reachable(a.info.id, b.info.id):
                    a.manager.member_left(b.info, [], self.now)
        self.rebalance()

    def heal(self) -> None:
        """The partition ends: each side sees the other join again."""
        split, self.cut = self.cut, None
        assert split is not None
        for a in self.members.values():
            for b in self.members.values():
                if (a.info.id in split[0]) != (b.info.id in split[0]):
                    self.deliver(a, a.manager.request_transfer([b.info], self.now))
        self.rebalance()

    def reachable(self, a: str, b: str) -> bool:
        return self.cut is None or (a in self.cut[0]) == (b in self.cut[0])

    def rebalance(self) -> None:
        for replica in list(self.members.values()):
            self.deliver(replica, replica.manager.rebalance(replica.store.ids(), self.now))
            replica.manager.rebalanced()

    def deliver(self, sender: Replica, messages: list[Outgoing]) -> None:
        queue = [(sender, message, True) for message in messages]
        while queue:
            source, message, sent = queue.pop(0)
            assert message.targets is not None, message  # never "everyone": placement decides
            for target in message.targets:
                self.messages.append((source.info.id, message.kind, target.id))
                if sent and self.lose is not None and self.lose(source, message, target):
                    continue
                if self.lose_asks and message.kind == "missing":
                    continue
                receiver = self.members.get(target.id)
                if receiver is not None and self.reachable(source.info.id, target.id):
                    replies = receiver.manager.receive(source.info, message.kind, message.payload, self.now)
                    queue.extend((receiver, reply, False) for reply in replies)

    def request(self, replica: Replica, session_id: str | None, action: Callable[[Session], Any]) -> str | None:
        if session_id is not None and session_id not in replica.store:  # the node's fetch
            others = tuple(
                m.info for m in self.members.values() if m is not replica and self.reachable(m.info.id, replica.info.id)
            )
            self.deliver(replica, [replica.manager.fetch([session_id], others)])
        done = replica.request(session_id, action, self.now)
        self.deliver(replica, done.messages)
        return done.session_id

    def copies(self, session_id: str) -> dict[str, dict[str, Any]]:
        """Each member's copy, read without unpacking anything (a check must not change state)."""
        found = {}
        for replica in self.members.values():
            dormant = replica.store.dormant(session_id)
            if dormant is not None:
                packed = msgpack.unpackb(dormant.data[1])
                found[replica.info.id] = replica.store.serializer.loads(packed[3])
            elif (session := replica.store.live(session_id)) is not None:
                found[replica.info.id] = dict(dict.items(session))
        return found


def put(**values: Any) -> Callable[[Session], None]:
    return lambda session: session.update(values)


def assert_placed(cluster: Cluster, expected: dict[str, dict[str, Any]]) -> None:
    want = min(1 + cluster.backups, len(cluster.members))
    for session_id, contents in expected.items():
        copies = cluster.copies(session_id)
        assert len(copies) == want, (session_id, copies)
        assert all(copy == contents for copy in copies.values()), (session_id, contents, copies)
    held = {sid for replica in cluster.members.values() for sid in replica.store.ids()}
    assert held == set(expected)


def session_and_taker(cluster: Cluster, taker: str) -> tuple[Replica, str, str, Replica]:
    """A session made on the first member ``a``: ``a``, its id, its backup's id, and another
    member to serve it: that backup (``taker="backup"``) or the member holding no copy."""
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(n=0))
    assert session_id is not None
    (backup,) = a.manager._placed[session_id].holders
    c = next(r for r in cluster.members.values() if r is not a and (r.info.id == backup) == (taker == "backup"))
    return a, session_id, backup, c
