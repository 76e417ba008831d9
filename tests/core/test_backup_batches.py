"""BackupManager: a rebalance sends a few batched messages per member, not two per session."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from replisession.core.messages import MemberInfo
from replisession.core.placement import batched
from replisession.core.replication import Outgoing
from replisession.errors import RemoteProtocolError

from .backup_sim import NOW, Cluster, assert_placed, member, put


def test_restoring_after_a_death_sends_one_copy_batch_and_one_placement_batch_per_member() -> None:
    cluster = Cluster(4, backups=1)
    primary = next(iter(cluster.members.values()))
    sessions = {cluster.request(primary, None, put(n=n)): {"n": n} for n in range(300)}
    cluster.messages.clear()
    cluster.crash(primary)
    sent = Counter((sender, kind, target) for sender, kind, target in cluster.messages)
    assert {kind for _, kind, _ in sent} == {"sessions", "placements"}
    assert max(sent.values()) == 1  # each survivor: one of each per other survivor, for 300 sessions
    assert len(sent) <= 3 * 2 * 2
    assert_placed(cluster, sessions)  # type: ignore[arg-type]


def test_a_join_batches_copies_and_placements_too() -> None:
    cluster = Cluster(3, backups=1)
    replicas = list(cluster.members.values())
    sessions = {cluster.request(replicas[n % 3], None, put(n=n)): {"n": n} for n in range(90)}
    cluster.messages.clear()
    newcomer = cluster.join()
    sent = Counter((sender, kind, target) for sender, kind, target in cluster.messages)
    assert max(sent.values()) == 1
    assert {kind for sender, kind, target in sent if target == newcomer.info.id} == {"sessions", "placements"}
    assert_placed(cluster, sessions)  # type: ignore[arg-type]


def _copy(session_id: str, size: int, targets: tuple[MemberInfo, ...]) -> Outgoing:
    return Outgoing("sessions", {"sessions": [[session_id, 0.0, 0.0, None, b"x" * size]]}, targets)


def _placement(session_id: str, targets: tuple[MemberInfo, ...]) -> Outgoing:
    return Outgoing("placement", {"id": session_id}, targets)


def _sessions_message(entries: list[list[Any]], targets: tuple[MemberInfo, ...]) -> Outgoing:
    return Outgoing("sessions", {"sessions": entries}, targets)


def test_batches_give_each_member_its_copies_before_any_placement() -> None:
    b, c = member(2), member(3)
    messages = [_placement("s0", (b,)), _copy("s1", 10, (b, c)), _placement("s1", (b, c)), _copy("s2", 10, (c,))]
    out = batched(messages, _sessions_message, 1000, 1 << 20)
    per_target = [(m.kind, m.targets, [e[0] for e in m.payload.get("sessions", [])]) for m in out]
    assert per_target[:2] == [("sessions", (b,), ["s1"]), ("sessions", (c,), ["s1", "s2"])]
    assert [m.kind for m in out[2:]] == ["placements", "placements"]
    assert [p["id"] for p in out[2].payload["placements"]] == ["s0", "s1"]
    assert out[2].targets == (b,)


def test_copy_batches_are_cut_at_the_batch_size_and_bytes() -> None:
    b = member(2)
    by_count = batched([_copy(f"s{n}", 10, (b,)) for n in range(25)], _sessions_message, 10, 1 << 20)
    assert [len(m.payload["sessions"]) for m in by_count] == [10, 10, 5]
    by_bytes = batched([_copy(f"s{n}", 1000, (b,)) for n in range(5)], _sessions_message, 1000, 2100)
    assert [len(m.payload["sessions"]) for m in by_bytes] == [2, 2, 1]


def test_only_sessions_and_placements_are_batched() -> None:
    with pytest.raises(ValueError, match="only addressed"):  # a delta must never be reordered around a copy
        batched([Outgoing("delta", {}, (member(2),))], _sessions_message, 10, 100)


def test_a_malformed_placement_batch_applies_nothing() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(n=1))
    assert session_id is not None
    holder = cluster.members[a.manager._placed[session_id].holders[0]]
    good = {"id": session_id, "owner": "nobody", "stamp": [10**6, "x"], "holders": [], "keep": False, "replaces": ""}
    bad = {**good, "stamp": [-1, "x"]}
    for payload in ({"placements": [good, bad]}, {"placements": good}, {"placements": [good], "more": 1}):
        with pytest.raises(RemoteProtocolError):
            holder.manager.receive(a.info, "placements", payload, NOW)
    assert holder.store.dormant(session_id) is not None  # the good one, which would drop it, was not applied
