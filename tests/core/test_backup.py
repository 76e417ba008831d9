"""BackupManager: each session on its primary and k backups, restored after losses.

A small synchronous cluster drives the managers the way the node does: a request on a
member that holds no copy first fetches it from every member, messages go to their
targets in order (each connection is FIFO), and after every join or death each member
re-places its sessions (``rebalance``). Random schedules of non-sticky requests,
joins and crashes of up to k members at once then check, after every step, that each
session has 1 + k copies on distinct live members, all equal to every write made.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replisession.core.backup import MISSING_RETRY, place
from replisession.core.session import Session

from .backup_sim import NOW, Cluster, assert_placed, member, put

# -- placement ---------------------------------------------------------------------------------


def test_backups_never_include_the_primary_and_are_distinct() -> None:
    members = [member(n) for n in range(1, 9)]
    for n in range(200):
        chosen = place(f"s{n}", members[0], members, 3)
        assert len(set(chosen)) == 3
        assert members[0].id not in chosen


def test_backups_spread_across_hosts_before_sharing_one() -> None:
    host_a = [member(1, "10.0.0.1"), member(2, "10.0.0.1")]
    host_b = [member(3, "10.0.0.2"), member(4, "10.0.0.2")]
    everyone = host_a + host_b
    for n in range(100):
        (backup,) = place(f"s{n}", host_a[0], everyone, 1)
        assert backup in {m.id for m in host_b}  # never the primary's own host while another is up
        two = place(f"s{n}", host_a[0], everyone, 2)
        assert {m.id for m in everyone if m.id in two} & {m.id for m in host_b}


def test_a_join_moves_only_the_sessions_the_new_member_wins() -> None:
    members = [member(n) for n in range(1, 6)]
    newcomer = member(6)
    before = {f"s{n}": place(f"s{n}", members[0], members, 1) for n in range(3000)}
    after = {f"s{n}": place(f"s{n}", members[0], [*members, newcomer], 1) for n in range(3000)}
    moved = [sid for sid in before if before[sid] != after[sid]]
    assert all(after[sid] == (newcomer.id,) for sid in moved)  # every move is onto the newcomer
    assert 0.15 < len(moved) / 3000 < 0.35  # about 1/5 of the backups of 4 candidates, not a reshuffle


def test_backups_spread_evenly() -> None:
    members = [member(n) for n in range(1, 6)]
    counts = dict.fromkeys((m.id for m in members[1:]), 0)
    for n in range(4000):
        (backup,) = place(f"s{n}", members[0], members, 1)
        counts[backup] += 1
    assert max(counts.values()) < 1.15 * min(counts.values())


# -- writes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3, 5, 8])
def test_a_write_goes_to_the_backups_only_however_large_the_cluster(size: int) -> None:
    cluster = Cluster(size, backups=1)
    first = next(iter(cluster.members.values()))
    session_id = cluster.request(first, None, put(n=0))
    cluster.messages.clear()
    for n in range(1, 6):
        cluster.request(first, session_id, put(n=n))
    assert [kind for _, kind, _ in cluster.messages] == ["delta"] * 5  # one message per write
    assert_placed(cluster, {session_id: {"n": 5}})  # type: ignore[dict-item]


def test_backups_keep_their_copies_packed() -> None:
    cluster = Cluster(3, backups=2)
    primary = next(iter(cluster.members.values()))
    session_id = cluster.request(primary, None, put(cart=[1]))
    cluster.request(primary, session_id, lambda s: s["cart"].append(2))
    assert session_id is not None
    for replica in cluster.members.values():
        if replica is not primary:
            assert replica.store.dormant(session_id) is not None
            assert replica.store.live(session_id) is None
    assert_placed(cluster, {session_id: {"cart": [1, 2]}})


def test_any_member_serves_any_session_and_becomes_its_primary() -> None:
    cluster = Cluster(5, backups=1)
    replicas = list(cluster.members.values())
    session_id = cluster.request(replicas[0], None, put(n=0))
    assert session_id is not None
    for n, replica in enumerate(replicas * 2, 1):  # round robin: mostly members with no copy
        seen: list[Any] = []
        cluster.request(replica, session_id, lambda s, n=n, seen=seen: (seen.append(s.get("n")), s.update(n=n)))
        assert seen == [n - 1]
        assert_placed(cluster, {session_id: {"n": n}})
        assert replica.store.live(session_id) is not None  # the server holds it unpacked: it is the primary


def test_a_read_only_request_elsewhere_moves_the_primary_too() -> None:
    cluster = Cluster(4, backups=1)
    a, b, c, d = cluster.members.values()
    session_id = cluster.request(a, None, put(n=1))
    holders = set(cluster.copies(session_id))  # type: ignore[arg-type]
    outsider = next(r for r in (b, c, d) if r.info.id not in holders)
    cluster.request(outsider, session_id, lambda s: (s.get("n"), s.mark_accessed()))
    assert outsider.info.id in cluster.copies(session_id)  # type: ignore[arg-type]
    assert_placed(cluster, {session_id: {"n": 1}})  # type: ignore[dict-item]


def test_an_invalidation_reaches_every_copy() -> None:
    cluster = Cluster(4, backups=2)
    first = next(iter(cluster.members.values()))
    session_id = cluster.request(first, None, put(n=1))
    cluster.request(first, session_id, lambda s: s.invalidate())
    assert_placed(cluster, {})


def test_a_rotation_moves_every_copy_to_the_new_id() -> None:
    cluster = Cluster(4, backups=2)
    first = next(iter(cluster.members.values()))
    old = cluster.request(first, None, put(n=1))
    new = cluster.request(first, old, lambda s: s.rotate_id())
    assert new is not None
    assert new != old
    assert_placed(cluster, {new: {"n": 1}})


# -- losses and joins --------------------------------------------------------------------------


def test_the_death_of_a_primary_promotes_a_backup_and_places_a_new_one() -> None:
    cluster = Cluster(4, backups=1)
    primary = next(iter(cluster.members.values()))
    sessions = {cluster.request(primary, None, put(n=n)): {"n": n} for n in range(20)}
    cluster.crash(primary)
    assert_placed(cluster, sessions)  # type: ignore[arg-type]


def test_k_simultaneous_deaths_lose_nothing() -> None:
    cluster = Cluster(5, backups=2)
    replicas = list(cluster.members.values())
    sessions = {}
    for n in range(30):
        sessions[cluster.request(replicas[n % 5], None, put(n=n))] = {"n": n}
    cluster.crash(replicas[0], replicas[1])
    assert_placed(cluster, sessions)  # type: ignore[arg-type]
    cluster.crash(replicas[2], replicas[3])  # down to one member: every session still there, alone
    assert_placed(cluster, sessions)  # type: ignore[arg-type]


def test_a_join_rebalances_backups_onto_the_new_member() -> None:
    cluster = Cluster(3, backups=1)
    replicas = list(cluster.members.values())
    sessions = {cluster.request(replicas[n % 3], None, put(n=n)): {"n": n} for n in range(60)}
    newcomer = cluster.join()
    assert_placed(cluster, sessions)  # type: ignore[arg-type]
    assert 5 < len(newcomer.store) < 40  # it took its share of backups, not everything


# -- random schedules --------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 50), st.integers(0, 50), st.sampled_from("abc")),
        st.tuples(st.just("new"), st.integers(0, 50), st.just(0), st.just("a")),
        st.tuples(st.just("crash"), st.integers(0, 50), st.integers(1, 2), st.just("")),
        st.tuples(st.just("join"), st.just(0), st.just(0), st.just("")),
        st.tuples(st.just("end"), st.integers(0, 50), st.integers(0, 50), st.just("")),
        st.tuples(st.just("partition"), st.integers(1, 50), st.just(0), st.just("")),
        st.tuples(st.just("heal"), st.just(0), st.just(0), st.just("")),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, backups=st.integers(1, 2), seed=st.integers(0, 1000))
def test_random_schedules_keep_1_plus_k_equal_copies_of_every_write(
    steps: list[tuple[str, int, int, str]], backups: int, seed: int
) -> None:
    """Non-sticky requests (any member), joins, crashes of up to k members at once, and
    partitions that heal (no crash while split: redundancy comes back only when whole).
    While partitioned, each side writes keys of its own (a key written on both sides of a
    split keeps only the newer write, by design) and sessions are not ended; a request
    for a session with no copy on its side is not made (the user would get a fresh
    session there). Checked whenever the cluster is whole."""
    rng = random.Random(seed)
    cluster = Cluster(backups + 2, backups=backups)
    expected: dict[str, dict[str, Any]] = {}
    values = itertools.count()
    for kind, pick, other, key in steps:
        replicas = list(cluster.members.values())
        if kind == "crash" and cluster.cut is None:  # while split, the partition is the failure
            victims = rng.sample(replicas, min(other, backups, len(replicas) - 1))
            cluster.crash(*victims)
        elif kind == "crash":
            continue
        elif kind == "join":
            cluster.join()
        elif kind == "partition":
            if cluster.cut is None and len(replicas) > 1:
                cluster.partition(rng.sample(replicas, 1 + pick % (len(replicas) - 1)))
        elif kind == "heal":
            if cluster.cut is not None:
                cluster.heal()
        elif kind == "new" or not expected:
            value = next(values)
            session_id = cluster.request(replicas[pick % len(replicas)], None, put(a=value))
            assert session_id is not None
            expected[session_id] = {"a": value}
        else:
            session_id = sorted(expected)[other % len(expected)]
            server = replicas[pick % len(replicas)]
            if cluster.cut is not None:
                if kind == "end" or not any(
                    session_id in r.store and cluster.reachable(r.info.id, server.info.id) for r in replicas
                ):
                    continue
                key = f"{key}{int(server.info.id in cluster.cut[0])}"  # each side its own keys
            if kind == "end":
                cluster.request(server, session_id, lambda s: s.invalidate())
                del expected[session_id]
            else:
                value = next(values)
                cluster.request(server, session_id, put(**{key: value}))
                expected[session_id][key] = value
        if cluster.cut is None:
            assert_placed(cluster, expected)
    if cluster.cut is not None:
        cluster.heal()
        assert_placed(cluster, expected)


def _long_schedule(seed: int) -> list[tuple[str, int, int, str]]:
    """40 steps, writes four times as likely as each other step: enough history for the
    partitions to split sessions that both sides then write (hypothesis's shrinking
    favours short schedules, which rarely get there)."""
    rng = random.Random(seed)
    write = lambda: ("write", rng.randrange(50), rng.randrange(50), rng.choice("abc"))  # noqa: E731
    others = [
        lambda: ("new", rng.randrange(50), 0, "a"),
        lambda: ("partition", rng.randrange(1, 50), 0, ""),
        lambda: ("heal", 0, 0, ""),
        lambda: ("crash", rng.randrange(50), rng.randrange(1, 3), ""),
        lambda: ("join", 0, 0, ""),
    ]
    return [rng.choice([write] * 4 + others)() for _ in range(40)]


@pytest.mark.parametrize("seed", range(120))
def test_long_random_schedules_with_partitions(seed: int) -> None:
    inner = test_random_schedules_keep_1_plus_k_equal_copies_of_every_write.hypothesis.inner_test  # type: ignore[attr-defined]
    inner(_long_schedule(seed), 1 + seed % 2, seed)


def test_every_holder_names_the_primary_as_owner() -> None:
    cluster = Cluster(4, backups=2)
    first, second = list(cluster.members.values())[:2]
    session_id = cluster.request(first, None, put(n=1))
    assert session_id is not None
    cluster.request(second, session_id, put(n=2))
    holders = cluster.copies(session_id)
    assert {cluster.members[h].manager.owner_of(session_id) for h in holders} == {second.info.id}


def test_a_backup_that_lost_its_copy_in_flight_gets_it_again_when_it_rejoins() -> None:
    cluster = Cluster(3, backups=1)
    a, b, c = cluster.members.values()
    delivered = cluster.deliver
    cluster.deliver = lambda sender, messages: delivered(  # type: ignore[method-assign]
        sender, [m for m in messages if not (sender is a and m.kind == "sessions")]
    )
    session_id = cluster.request(a, None, put(n=1))  # the full copy to its backup is lost
    cluster.deliver = delivered  # type: ignore[method-assign]
    assert session_id is not None
    (backup_id,) = a.manager._placed[session_id].holders
    backup = cluster.members[backup_id]
    other = c if backup is b else b
    a.manager.member_left(backup.info, [other.info], NOW)  # a false "crashed", then it is back
    a.manager.request_transfer([backup.info], NOW)
    cluster.rebalance()
    cluster.request(a, session_id, put(n=2))
    assert_placed(cluster, {session_id: {"n": 2}})


# -- concurrent rotations ----------------------------------------------------------------------


def login(**values: Any) -> Callable[[Session], None]:
    def action(session: Session) -> None:
        session.rotate_id()
        session.update(values)

    return action


def interleavings(first: list[Any], second: list[Any]) -> list[list[Any]]:
    """Every merge of two sequences that keeps the order of each."""
    if not first or not second:
        return [first + second]
    return [[first[0], *rest] for rest in interleavings(first[1:], second)] + [
        [second[0], *rest] for rest in interleavings(first, second[1:])
    ]


@pytest.mark.parametrize("primary", [0, -1], ids=["primary_loses", "primary_wins"])  # equal counters: member ids
@pytest.mark.parametrize(("size", "backups"), [(3, 2), (4, 1), (5, 2)])
def test_two_members_that_rotate_one_session_concurrently_leave_one_id_placed(
    size: int, backups: int, primary: int
) -> None:
    for order in range(len(concurrent_logins(size, backups, primary)[2])):
        cluster, from_first, merges = concurrent_logins(size, backups, primary)
        for sender, message in merges[order]:
            cluster.deliver(sender, [message])  # each with the replies it causes, before the next
        for replica in cluster.members.values():  # the timer: copies no placement claimed are dropped
            replica.manager.tick(cluster.now + MISSING_RETRY)
        stamps = {m.payload["id"]: m.payload["stamp"] for _, m in merges[order] if m.kind == "delta"}
        assert len(stamps) == 2
        assert len({counter for counter, _ in stamps.values()}) == 1
        winner = max(stamps, key=lambda i: stamps[i])
        assert (winner == from_first) == (primary == -1)
        assert_placed(cluster, {winner: {"n": 1, "a": 1, "b": 2}})
    (loser,) = set(stamps) - {winner}
    seen: list[dict[str, Any]] = []
    for replica in list(cluster.members.values()):  # the browser that got the losing id, on any member
        assert cluster.request(replica, loser, lambda s: (seen.append(dict(s)), s.mark_accessed())) == winner
    assert seen == [{"n": 1, "a": 1, "b": 2}] * len(cluster.members)
    assert_placed(cluster, {winner: {"n": 1, "a": 1, "b": 2}})


def concurrent_logins(size: int, backups: int, primary: int) -> tuple[Cluster, str | None, list[Any]]:
    """The primary (``primary``-th member) and a backup both rotate one session (logins with one
    cookie), neither hearing of the other: the cluster, the primary's new id, and every
    interleaving of the two members' messages."""
    cluster = Cluster(size, backups=backups)
    first = list(cluster.members.values())[primary]
    old = cluster.request(first, None, put(n=1))
    assert old is not None
    holder = next(r for r in cluster.members.values() if r is not first and old in r.store)
    # Two requests with the same cookie, on the primary and on a backup, before either hears of the other.
    from_first = first.request(old, login(a=1), cluster.now)
    from_holder = holder.request(old, login(b=2), cluster.now)
    merges = interleavings([(first, m) for m in from_first.messages], [(holder, m) for m in from_holder.messages])
    return cluster, from_first.session_id, merges
