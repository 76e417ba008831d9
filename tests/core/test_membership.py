"""Membership and failure detection: the sans-IO state machine, then fault schedules on SimCluster.

The first half drives :class:`Membership` by hand and compares whole effect lists. The
second half runs the real state machines of several members on the in-memory network
with a fake clock (``replisession.testing``): joins, crashes, hangs, graceful stops,
restarts, partitions and message faults, fixed and randomised.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replisession.core.membership import (
    REPROBE_FIRST,
    Connect,
    Disconnect,
    Effect,
    MemberJoined,
    MemberLeft,
    Membership,
    MemberState,
    MemberSuspected,
    Probe,
    SendTo,
)
from replisession.core.messages import Ack, Heartbeat, Leave, MemberInfo
from replisession.testing import SimCluster, SimMember


def member(route: str, port: int, incarnation: int) -> MemberInfo:
    return MemberInfo(route, "10.0.0.1", port, f"{incarnation:032x}")


LOCAL = member("local", 4000, 1)
A = member("a", 4001, 2)
B = member("b", 4002, 3)
C = member("c", 4003, 4)
A_RESTARTED = member("a", 4001, 5)  # same route and address as A, new incarnation
SEED = ("10.0.0.9", 4009)
SEED2 = ("10.0.0.8", 4008)


def beat(*members: MemberInfo) -> Heartbeat:
    return Heartbeat(members)


def with_peers(*peers: MemberInfo, now: float = 0.0, **kwargs: float) -> Membership:
    """A membership (no seeds) already connected to ``peers`` and past its first tick."""
    membership = Membership(LOCAL, **kwargs)
    for peer in peers:
        membership.connected(peer, now)
    membership.tick(now)
    return membership


# -- construction ---------------------------------------------------------------------------


def test_drop_time_must_exceed_heartbeat_interval() -> None:
    with pytest.raises(ValueError, match="drop_time must be longer than heartbeat_interval"):
        Membership(LOCAL, heartbeat_interval=1.0, drop_time=1.0)


def test_defaults() -> None:
    membership = Membership(LOCAL)
    assert (membership.heartbeat_interval, membership.drop_time, membership.suspect_timeout) == (0.5, 3.0, 15.0)
    assert (membership.max_backoff, membership.refused_backoff) == (5.0, 30.0)
    assert membership.seeds == ()
    assert membership.members() == []
    assert membership.alive() == []
    assert membership.state_of(A.id) is None
    assert membership.get(A.id) is None
    assert Membership(LOCAL, drop_time=2.0, suspect_timeout=7.0).suspect_timeout == 7.0


# -- seeds and joining ----------------------------------------------------------------------


def test_first_tick_dials_every_seed_once() -> None:
    membership = Membership(LOCAL, seeds=[SEED, SEED2])
    assert membership.tick(0.0) == [Connect(SEED), Connect(SEED2)]
    assert membership.tick(10.0) == []  # both dials still pending: no second dial


def test_own_address_in_seeds_is_ignored() -> None:
    membership = Membership(LOCAL, seeds=[LOCAL.address, SEED, LOCAL.address])
    assert membership.seeds == (SEED,)
    assert membership.tick(0.0) == [Connect(SEED)]


def test_connected_emits_joined_and_an_immediate_heartbeat() -> None:
    membership = Membership(LOCAL, seeds=[SEED])
    membership.tick(0.0)
    assert membership.connected(A, 0.1) == [MemberJoined(A), SendTo(A, beat(LOCAL, A))]
    # The second member hears about the first in its introduction.
    assert membership.connected(B, 0.2) == [MemberJoined(B), SendTo(B, beat(LOCAL, A, B))]
    assert membership.members() == [A, B]
    assert membership.alive() == [A, B]
    assert membership.state_of(A.id) is MemberState.ALIVE
    assert membership.get(B.id) == B


def test_connected_twice_joins_once() -> None:
    # Two members that dial each other at the same moment complete two handshakes.
    membership = with_peers(A)
    assert membership.connected(A, 0.1) == [SendTo(A, beat(LOCAL, A))]
    assert membership.members() == [A]


def test_connected_to_ourselves_is_ignored() -> None:
    membership = Membership(LOCAL)
    assert membership.connected(LOCAL, 0.0) == []
    assert membership.members() == []


def test_seed_is_not_redialled_while_connected() -> None:
    seed_member = MemberInfo("s", *SEED, f"{9:032x}")
    membership = Membership(LOCAL, seeds=[SEED])
    assert membership.tick(0.0) == [Connect(SEED)]
    membership.connected(seed_member, 0.1)
    assert membership.tick(0.5) == [SendTo(seed_member, beat(LOCAL, seed_member))]
    membership.received(seed_member.id, beat(seed_member, LOCAL), 59.75)
    assert membership.tick(60.0) == [SendTo(seed_member, beat(LOCAL, seed_member))]


def test_tick_heartbeats_every_connected_member_each_interval() -> None:
    membership = Membership(LOCAL)
    membership.connected(A, 0.0)
    membership.connected(B, 0.0)
    everyone = beat(LOCAL, A, B)
    assert membership.tick(0.0) == [SendTo(A, everyone), SendTo(B, everyone)]
    assert membership.tick(0.3) == []
    assert membership.tick(0.5) == [SendTo(A, everyone), SendTo(B, everyone)]
    assert membership.tick(0.9) == []
    assert membership.tick(1.0) == [SendTo(A, everyone), SendTo(B, everyone)]


def test_gossip_of_an_unknown_member_dials_its_address_once() -> None:
    membership = with_peers(A)
    assert membership.received(A.id, beat(A, LOCAL, B), 0.1) == [Connect(B.address)]
    assert membership.received(A.id, beat(A, LOCAL, B), 0.2) == []  # dial still pending
    # Only the authenticated handshake makes B a member, not the gossip.
    assert membership.members() == [A]
    assert membership.connected(B, 0.3) == [MemberJoined(B), SendTo(B, beat(LOCAL, A, B))]
    assert membership.received(A.id, beat(A, LOCAL, B), 0.4) == []


def test_gossip_retries_a_failed_address_only_after_its_backoff() -> None:
    membership = with_peers(A)
    assert membership.received(A.id, beat(A, B), 0.1) == [Connect(B.address)]
    assert membership.dial_failed(B.address, 0.2) == []
    assert membership.received(A.id, beat(A, B), 0.6) == []  # backoff 0.5: until 0.7
    assert membership.received(A.id, beat(A, B), 0.7) == [Connect(B.address)]


def test_discovered_dials_a_new_member_only() -> None:
    membership = with_peers(A)
    assert membership.discovered(B, 0.1) == [Connect(B.address)]
    assert membership.discovered(A, 0.1) == []
    assert membership.discovered(LOCAL, 0.1) == []


def test_gossip_of_our_previous_incarnation_does_not_dial_ourselves() -> None:
    previous_self = member("local", 4000, 99)
    membership = with_peers(A)
    assert membership.received(A.id, beat(A, previous_self), 0.1) == []


def test_any_message_is_a_sign_of_life() -> None:
    membership = with_peers(A)
    assert membership.received(A.id, Ack(7), 2.9) == []
    assert membership.tick(3.0) == [SendTo(A, beat(LOCAL, A))]  # heard at 2.9: not suspect
    assert membership.state_of(A.id) is MemberState.ALIVE


def test_messages_from_unknown_members_are_ignored() -> None:
    membership = with_peers(A)
    assert membership.received(B.id, beat(B, C), 0.1) == []
    assert membership.received(B.id, Leave(), 0.1) == []
    assert membership.disconnected(B.id, 0.1) == []
    assert membership.probe_result(B.id, False, 0.1) == []
    assert membership.members() == [A]


# -- failure detection ------------------------------------------------------------------------


def test_silence_for_drop_time_makes_a_member_suspect_and_probes_it() -> None:
    membership = with_peers(A)
    assert membership.tick(2.99) == [SendTo(A, beat(LOCAL, A))]
    assert membership.tick(3.0) == [MemberSuspected(A), Probe(A)]
    assert membership.state_of(A.id) is MemberState.SUSPECT
    assert membership.alive() == []
    assert membership.members() == [A]  # a suspect is still a member (and still in gossip)
    assert membership.tick(3.5) == [SendTo(A, beat(LOCAL, A))]  # probe pending: no second probe


def test_failed_probe_removes_the_member_as_crashed() -> None:
    membership = with_peers(A, B)
    membership.received(B.id, beat(B), 2.0)
    assert membership.tick(3.0) == [
        SendTo(A, beat(LOCAL, A, B)),
        SendTo(B, beat(LOCAL, A, B)),
        MemberSuspected(A),
        Probe(A),
    ]
    assert membership.probe_result(A.id, False, 3.1) == [MemberLeft(A, "crashed"), Disconnect(A)]
    assert membership.members() == [B]
    # Its address is still dialled (with backoff): a healed partition or a restart comes back.
    assert membership.tick(3.5) == [SendTo(B, beat(LOCAL, B)), Connect(A.address)]


def test_successful_probe_keeps_a_suspect_until_it_speaks() -> None:
    membership = with_peers(A)
    membership.tick(3.0)
    assert membership.probe_result(A.id, True, 3.1) == []
    assert membership.state_of(A.id) is MemberState.SUSPECT
    # A suspect is re-verified every drop_time.
    assert membership.tick(5.75) == [SendTo(A, beat(LOCAL, A))]
    assert membership.tick(6.0) == [Probe(A)]
    assert membership.probe_result(A.id, True, 6.125) == []
    # Any message brings it back; there is no event for that.
    assert membership.received(A.id, beat(A, LOCAL), 6.25) == []
    assert membership.state_of(A.id) is MemberState.ALIVE
    assert membership.tick(9.0) == [SendTo(A, beat(LOCAL, A))]  # neither suspect nor probed
    assert membership.tick(9.25) == [MemberSuspected(A), Probe(A)]  # silent again since 6.25


def test_a_suspect_that_never_speaks_is_removed_after_suspect_timeout() -> None:
    membership = with_peers(A)
    membership.tick(3.0)
    membership.probe_result(A.id, True, 3.1)
    for now in (6.0, 9.0, 12.0, 15.0):
        assert membership.tick(now) == [SendTo(A, beat(LOCAL, A)), Probe(A)]
        assert membership.probe_result(A.id, True, now + 0.1) == []
    assert membership.tick(17.875) == [SendTo(A, beat(LOCAL, A))]
    # Removed, and its address dialled again at once (a restarted process would answer).
    assert membership.tick(18.0) == [MemberLeft(A, "unresponsive"), Disconnect(A), Connect(A.address)]
    assert membership.members() == []


def test_suspect_timeout_is_configurable() -> None:
    membership = with_peers(A, suspect_timeout=1.0)
    assert membership.tick(3.0) == [SendTo(A, beat(LOCAL, A)), MemberSuspected(A), Probe(A)]
    membership.probe_result(A.id, True, 3.1)
    # The beat goes out before the checks, so the member removed in this tick gets one last beat naming it.
    assert membership.tick(4.0) == [
        SendTo(A, beat(LOCAL, A)),
        MemberLeft(A, "unresponsive"),
        Disconnect(A),
        Connect(A.address),
    ]


def test_lost_connection_is_probed_once_and_redialled() -> None:
    membership = with_peers(A)
    assert membership.disconnected(A.id, 1.0) == [Probe(A)]
    assert membership.disconnected(A.id, 1.1) == []  # the probe is already under way
    # No heartbeat over a closed connection, and the address is dialled again at once.
    assert membership.tick(1.2) == [Connect(A.address)]
    assert membership.tick(1.3) == []
    assert membership.probe_result(A.id, True, 1.3) == []
    assert membership.state_of(A.id) is MemberState.ALIVE
    assert membership.connected(A, 1.4) == [SendTo(A, beat(LOCAL, A))]
    assert membership.tick(1.7) == [SendTo(A, beat(LOCAL, A))]  # next beat: 0.5 after the one at 1.2


def test_lost_connection_with_a_dead_process_is_removed_without_waiting_for_drop_time() -> None:
    membership = with_peers(A)
    assert membership.disconnected(A.id, 1.0) == [Probe(A)]
    # The connection is already closed: no Disconnect effect.
    assert membership.probe_result(A.id, False, 1.01) == [MemberLeft(A, "crashed")]


def test_leave_removes_the_sender_at_once_without_a_probe() -> None:
    membership = with_peers(A, B)
    assert membership.received(A.id, Leave(), 0.1) == [MemberLeft(A, "left"), Disconnect(A)]
    assert membership.members() == [B]
    # A departed member that is not a seed is not redialled.
    membership.received(B.id, beat(B), 10.0)
    assert membership.tick(10.0) == [SendTo(B, beat(LOCAL, B))]


def test_a_seed_that_left_is_dialled_again() -> None:
    seed_member = MemberInfo("s", *SEED, f"{9:032x}")
    membership = Membership(LOCAL, seeds=[SEED])
    membership.tick(0.0)
    membership.connected(seed_member, 0.1)
    assert membership.received(seed_member.id, Leave(), 0.2) == [
        MemberLeft(seed_member, "left"),
        Disconnect(seed_member),
    ]
    assert membership.tick(0.5) == [Connect(SEED)]


def test_new_incarnation_at_a_known_address_replaces_the_old_one() -> None:
    membership = with_peers(A, B)
    assert membership.connected(A_RESTARTED, 1.0) == [
        MemberLeft(A, "restarted"),
        Disconnect(A),
        MemberJoined(A_RESTARTED),
        SendTo(A_RESTARTED, beat(LOCAL, B, A_RESTARTED)),
    ]
    assert membership.members() == [B, A_RESTARTED]


def test_new_incarnation_found_through_gossip_is_dialled_at_the_old_address() -> None:
    membership = with_peers(A, B)
    assert membership.received(B.id, beat(B, A_RESTARTED), 1.0) == [Connect(A.address)]


def test_restart_of_a_member_whose_connection_is_already_closed() -> None:
    membership = with_peers(A)
    membership.disconnected(A.id, 1.0)
    assert membership.connected(A_RESTARTED, 1.1) == [
        MemberLeft(A, "restarted"),  # no Disconnect: nothing left to close
        MemberJoined(A_RESTARTED),
        SendTo(A_RESTARTED, beat(LOCAL, A_RESTARTED)),
    ]
    assert membership.probe_result(A.id, False, 1.2) == []  # the late answer is about a removed member


# -- dialling ---------------------------------------------------------------------------------


def test_failed_dials_back_off_doubling_up_to_max_backoff() -> None:
    membership = Membership(LOCAL, seeds=[SEED])
    now = 0.0
    assert membership.tick(now) == [Connect(SEED)]
    waits = []
    for _ in range(6):
        assert membership.dial_failed(SEED, now) == []
        wait = 0.0
        while membership.tick(now + wait) == []:
            wait = round(wait + 0.25, 2)
        waits.append(wait)
        now += wait
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_successful_connection_resets_the_backoff() -> None:
    seed_member = MemberInfo("s", *SEED, f"{9:032x}")
    membership = Membership(LOCAL, seeds=[SEED])
    for now in (0.0, 0.5, 1.5, 3.5):
        assert membership.tick(now) == [Connect(SEED)]
        membership.dial_failed(SEED, now)
    assert membership.tick(7.25) == []
    assert membership.tick(7.5) == [Connect(SEED)]  # the backoff grew to 4 s
    membership.connected(seed_member, 7.5)
    assert membership.disconnected(seed_member.id, 7.75) == [Probe(seed_member)]
    assert membership.probe_result(seed_member.id, False, 7.75) == [MemberLeft(seed_member, "crashed")]
    assert membership.tick(7.75) == [Connect(SEED)]
    membership.dial_failed(SEED, 8.0)
    assert membership.tick(8.25) == []
    assert membership.tick(8.5) == [Connect(SEED)]  # 0.5 s again, not 8


def test_refused_dial_waits_refused_backoff_and_gossip_does_not_retry_it() -> None:
    membership = with_peers(A)
    assert membership.received(A.id, beat(A, B), 0.0) == [Connect(B.address)]
    assert membership.dial_failed(B.address, 0.1, refused=True) == []
    assert membership.received(A.id, beat(A, B), 31.0) == []  # gossip never retries a refusal
    assert Connect(B.address) not in membership.tick(30.0)
    assert membership.tick(30.1)[-1] == Connect(B.address)  # the timer does, after refused_backoff
    # Once it answers properly, it joins and the refusal is forgotten.
    assert membership.connected(B, 30.2) == [MemberJoined(B), SendTo(B, beat(LOCAL, A, B))]


def test_dial_failed_for_an_address_never_dialled_is_ignored() -> None:
    membership = Membership(LOCAL)
    assert membership.dial_failed(SEED, 0.0) == []
    assert membership.tick(100.0) == []


# -- leaving -----------------------------------------------------------------------------------


def test_leave_tells_every_connected_member_then_the_member_is_inert() -> None:
    membership = with_peers(A, B, C, now=0.0)
    membership.disconnected(C.id, 0.1)  # no connection to tell C over
    assert membership.leave() == [SendTo(A, Leave()), SendTo(B, Leave())]
    assert membership.tick(100.0) == []
    # A connection that still completes is closed rather than joined.
    assert membership.connected(member("d", 4005, 6), 100.0) == [Disconnect(member("d", 4005, 6))]
    assert membership.received(A.id, beat(A, member("e", 4006, 7)), 100.0) == []
    assert membership.received(A.id, Leave(), 100.0) == []
    assert membership.disconnected(B.id, 100.0) == []
    assert membership.dial_failed(C.address, 100.0) == []


@pytest.mark.parametrize("call", ["discovered", "probe_result", "leave_again"])
def test_a_member_that_left_stays_inert(call: str) -> None:
    membership = with_peers(A)
    membership.tick(3.0)  # A suspect, probe under way
    membership.leave()
    effects = {
        "discovered": lambda: membership.discovered(B, 4.0),
        "probe_result": lambda: membership.probe_result(A.id, False, 4.0),
        "leave_again": membership.leave,
    }[call]()
    assert effects == []


# -- a property of every input sequence --------------------------------------------------------

POOL = [A, B, C, A_RESTARTED]
inputs = st.one_of(
    st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
    st.tuples(st.just("connected"), st.sampled_from(POOL)),
    st.tuples(st.just("disconnected"), st.sampled_from(POOL)),
    st.tuples(st.just("heartbeat"), st.sampled_from(POOL), st.lists(st.sampled_from([*POOL, LOCAL]), max_size=4)),
    st.tuples(st.just("leave"), st.sampled_from(POOL)),
    st.tuples(st.just("probe"), st.sampled_from(POOL), st.booleans()),
    st.tuples(st.just("dial_failed"), st.sampled_from(POOL), st.booleans()),
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(inputs, max_size=40))
def test_events_always_match_the_member_list(steps: list[tuple]) -> None:
    """Whatever arrives, listeners hear every change exactly once and nothing names ourselves."""
    membership = Membership(LOCAL, seeds=[A.address])
    now = 0.0
    known: dict[str, MemberInfo] = {}
    for step in steps:
        kind = step[0]
        if kind == "tick":
            now += step[1]
            effects = membership.tick(now)
        elif kind == "connected":
            effects = membership.connected(step[1], now)
        elif kind == "disconnected":
            effects = membership.disconnected(step[1].id, now)
        elif kind == "heartbeat":
            effects = membership.received(step[1].id, Heartbeat(tuple(step[2])), now)
        elif kind == "leave":
            effects = membership.received(step[1].id, Leave(), now)
        elif kind == "probe":
            effects = membership.probe_result(step[1].id, step[2], now)
        else:
            effects = membership.dial_failed(step[1].address, now, refused=step[2])
        for effect in effects:
            if isinstance(effect, MemberJoined):
                assert effect.member.id not in known
                known[effect.member.id] = effect.member
            elif isinstance(effect, MemberLeft):
                assert known.pop(effect.member.id) == effect.member
            elif isinstance(effect, MemberSuspected):
                assert effect.member.id in known
            elif isinstance(effect, Connect):
                assert effect.address != LOCAL.address
            else:
                assert effect.member != LOCAL
        assert {m.id for m in membership.members()} == set(known)
        # One member per address: a new incarnation always replaces the old one.
        assert len({m.address for m in membership.members()}) == len(membership.members())


# == schedules on the in-memory network ========================================================
#
# SimCluster defaults: heartbeat 0.5 s, drop_time 3 s (so suspect_timeout 15 s), max_backoff
# 5 s, one-way delay 1 ms, members ticked every 0.1 s; the first member is everyone's seed.

HEARTBEAT, DROP_TIME, SUSPECT_TIMEOUT, MAX_BACKOFF, STEP = 0.5, 3.0, 15.0, 5.0, 0.1


def ids(sim: SimMember) -> set[str]:
    return {m.id for m in sim.membership.members()}


def about(sim: SimMember, info: MemberInfo) -> list[Effect]:
    return [event for event in sim.events if event.member == info]


def lost_by_all(cluster: SimCluster, gone: SimMember) -> Callable[[], bool]:
    return lambda: all(gone.info.id not in ids(m) for m in cluster.members if m.running)


def replayed(sim: SimMember) -> set[str]:
    """The member list a listener rebuilds from the events alone (and they must make sense)."""
    members: set[str] = set()
    for event in sim.events:
        if isinstance(event, MemberJoined):
            assert event.member.id not in members, event
            members.add(event.member.id)
        elif isinstance(event, MemberLeft):
            assert event.member.id in members, event
            members.remove(event.member.id)
        else:
            assert isinstance(event, MemberSuspected)
            assert event.member.id in members, event
    return members


def run_until(cluster: SimCluster, condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Simulated seconds until ``condition`` holds, rounded to the millisecond (steps add up in floats)."""
    return round(cluster.run_until(condition, timeout=timeout), 3)


def converged_cluster(size: int, **kwargs: float) -> SimCluster:
    cluster = SimCluster(size, **kwargs)
    cluster.run_until(cluster.converged, timeout=5)
    return cluster


@pytest.mark.parametrize("size", range(3, 9))
def test_members_starting_at_the_same_moment_with_one_seed_converge(size: int) -> None:
    cluster = SimCluster(size)
    took = run_until(cluster, cluster.converged)
    # One round of dials to the seed, one round of gossip, one round of dials.
    assert took <= 2 * HEARTBEAT
    for sim in cluster.members:
        others = [m.info for m in cluster.members if m is not sim]
        assert sorted(sim.events, key=lambda e: e.member.port) == [MemberJoined(info) for info in others]
        assert sim.membership.alive() == sim.membership.members()
        assert replayed(sim) == ids(sim)


def test_members_wait_for_a_seed_that_starts_last() -> None:
    cluster = SimCluster()
    late = [cluster.add_member(f"node{i + 1}", address=cluster.address_of(i)) for i in range(1, 5)]
    cluster.run_for(7.0)
    assert [(m.events, ids(m)) for m in late] == [([], set())] * 4  # nobody to join yet
    seed = cluster.add_member("node1", address=cluster.address_of(0))
    assert seed.membership.seeds == ()
    took = run_until(cluster, cluster.converged)
    assert took <= MAX_BACKOFF + 2 * HEARTBEAT  # the next dial after the backoff finds it
    assert sorted(seed.events, key=lambda e: e.member.port) == [MemberJoined(m.info) for m in late]


def test_members_join_in_any_order() -> None:
    """Every start order of four members seeding on the first two, 0.7 s apart, converges."""
    seeds = [("10.0.0.1", 4000), ("10.0.0.1", 4001)]
    for order in itertools.permutations(range(4)):
        cluster = SimCluster()
        for index in order:
            cluster.add_member(f"node{index + 1}", seeds=seeds, address=cluster.address_of(index))
            cluster.run_for(0.7)
        took = run_until(cluster, cluster.converged)
        assert took <= MAX_BACKOFF + HEARTBEAT, order
        for sim in cluster.members:
            others = sorted((m.info for m in cluster.members if m is not sim), key=lambda info: info.port)
            assert sorted(sim.events, key=lambda e: e.member.port) == [MemberJoined(info) for info in others]


@pytest.mark.parametrize("victim", [0, 2], ids=["seed", "non-seed"])
def test_crash_is_detected_by_every_survivor_within_drop_time(victim: int) -> None:
    cluster = converged_cluster(5)
    dead = cluster.members[victim]
    cluster.crash(dead)
    # The kernel closes the dead process's connections: each survivor probes at once.
    took = run_until(cluster, lost_by_all(cluster, dead))
    assert took <= STEP
    survivors = [m for m in cluster.members if m is not dead]
    for sim in survivors:
        assert about(sim, dead.info) == [MemberJoined(dead.info), MemberLeft(dead.info, "crashed")]
        assert replayed(sim) == ids(sim) == {m.info.id for m in survivors if m is not sim}
    cluster.run_for(30.0)  # no further events
    assert all(about(sim, dead.info)[2:] == [] for sim in survivors)


def test_one_live_seed_is_enough_to_join() -> None:
    cluster = converged_cluster(4)
    cluster.crash(cluster.members[0])
    cluster.run_for(1.0)
    newcomer = cluster.add_member("node5", seeds=[cluster.address_of(0), cluster.address_of(3)])
    took = run_until(cluster, cluster.converged)
    assert took <= 2 * HEARTBEAT
    assert sorted(newcomer.events, key=lambda e: e.member.port) == [MemberJoined(m.info) for m in cluster.members[1:4]]


def test_hung_member_is_suspected_after_drop_time_and_removed_after_suspect_timeout() -> None:
    cluster = converged_cluster(4)
    hung = cluster.members[1]
    survivors = [m for m in cluster.members if m is not hung]
    cluster.run_for(1.03)  # hang between two heartbeats
    cluster.hang(hung)
    suspected = run_until(cluster, lambda: all(MemberSuspected(hung.info) in m.events for m in survivors))
    assert DROP_TIME - HEARTBEAT <= suspected <= DROP_TIME + 2 * STEP
    # Its kernel still accepts connections, so the probes succeed and it stays a suspect.
    cluster.run_for(SUSPECT_TIMEOUT - 2 * STEP)
    assert [m.membership.state_of(hung.info.id) for m in survivors] == [MemberState.SUSPECT] * 3
    removed = run_until(cluster, lost_by_all(cluster, hung))
    assert removed <= 3 * STEP
    for sim in survivors:
        assert about(sim, hung.info) == [
            MemberJoined(hung.info),
            MemberSuspected(hung.info),
            MemberLeft(hung.info, "unresponsive"),
        ]
        assert replayed(sim) == ids(sim)
    assert cluster.converged()


def test_graceful_stop_is_removed_at_once() -> None:
    cluster = converged_cluster(4)
    leaving = cluster.members[2]
    events_before = list(leaving.events)
    cluster.stop(leaving)
    took = run_until(cluster, lost_by_all(cluster, leaving))
    assert took <= STEP  # well under drop_time: no suspicion, no probe
    cluster.run_for(10.0)
    for sim in cluster.members:
        if sim is not leaving:
            assert about(sim, leaving.info) == [MemberJoined(leaving.info), MemberLeft(leaving.info, "left")]
    assert leaving.events == events_before
    assert leaving.crashed
    assert cluster.converged()


def test_restarted_member_is_a_new_member() -> None:
    cluster = converged_cluster(4)
    old = cluster.members[2]
    new = cluster.restart(old)
    assert (new.info.route, new.info.address) == (old.info.route, old.info.address)
    assert new.info.incarnation != old.info.incarnation
    took = run_until(cluster, cluster.converged)
    assert took <= 2 * HEARTBEAT
    for sim in cluster.members:
        if sim is not new:
            # The closed connections are probed before the new process dials in.
            assert about(sim, old.info) == [MemberJoined(old.info), MemberLeft(old.info, "crashed")]
            assert about(sim, new.info) == [MemberJoined(new.info)]
    assert sorted(new.events, key=lambda e: e.member.port) == [
        MemberJoined(m.info) for m in cluster.members if m is not new
    ]


def test_restart_met_before_the_probe_answers_is_reported_as_restarted() -> None:
    cluster = converged_cluster(4)
    cluster.network.faults(min_delay=0.3, max_delay=0.3)
    old = cluster.members[2]
    new = cluster.restart(old)
    run_until(cluster, cluster.converged)
    seed, *others = (m for m in cluster.members if m is not new)
    # The new incarnation's handshake with its seed completes before the seed's probe of the old one answers.
    assert about(seed, old.info) == [MemberJoined(old.info), MemberLeft(old.info, "restarted")]
    for sim in others:
        assert about(sim, old.info) == [MemberJoined(old.info), MemberLeft(old.info, "crashed")]
    for sim in (seed, *others):
        assert about(sim, new.info) == [MemberJoined(new.info)]


def test_partition_then_heal() -> None:
    cluster = converged_cluster(5)
    big, small = cluster.members[:3], cluster.members[3:]
    cluster.network.partition(big, small)

    def split() -> bool:
        return all(ids(m) == {o.info.id for o in side if o is not m} for side in (big, small) for m in side)

    took = run_until(cluster, split)
    assert took <= DROP_TIME + HEARTBEAT
    for side, other_side in ((big, small), (small, big)):
        for sim in side:
            for peer in other_side:
                # All heartbeats stop together: every member suspects before any closed connection reaches it.
                assert about(sim, peer.info) == [
                    MemberJoined(peer.info),
                    MemberSuspected(peer.info),
                    MemberLeft(peer.info, "crashed"),
                ]
    cluster.run_for(10.0)
    assert split()  # the failed dials across do not bring anyone back
    cluster.network.heal()
    took = run_until(cluster, cluster.converged)
    assert took <= MAX_BACKOFF + HEARTBEAT
    for side, other_side in ((big, small), (small, big)):
        for sim in side:
            for peer in other_side:
                assert about(sim, peer.info)[3:] == [MemberJoined(peer.info)]  # the same incarnation, back
            assert replayed(sim) == ids(sim)


@pytest.mark.parametrize("seed", [1, 7])
def test_message_faults_do_not_remove_live_members(seed: int) -> None:
    # 20% drop and duplicate, delays of 1-200 ms (so messages reorder), for 120 s. With these
    # seeds some members miss six heartbeats in a row and are suspected: the probe succeeds and
    # the next heartbeat that gets through brings them back.
    cluster = SimCluster(5, seed=seed)
    cluster.network.faults(drop=0.2, duplicate=0.2, min_delay=0.001, max_delay=0.2)
    assert run_until(cluster, cluster.converged) <= 4 * HEARTBEAT
    cluster.run_for(120.0)
    events = [e for m in cluster.members for e in m.events if not isinstance(e, MemberJoined)]
    assert events != []
    assert all(isinstance(e, MemberSuspected) for e in events)
    cluster.network.faults()
    cluster.run_for(HEARTBEAT + STEP)
    assert cluster.converged()
    for sim in cluster.members:
        assert sim.membership.alive() == sim.membership.members()
        assert len([e for e in sim.events if isinstance(e, MemberJoined)]) == 4


def test_other_cluster_name_or_secret_never_joins() -> None:
    cluster = converged_cluster(3)
    alien = cluster.add_member("alien", cluster="other")
    intruder = cluster.add_member("intruder", secret=b"not the cluster secret")
    cluster.run_for(65.0)
    seed = cluster.address_of(0)
    # Refused dials back off refused_backoff (30 s): three tries in 65 s.
    assert alien.refusals == [(seed, "cluster name differs")] * 3
    assert intruder.refusals == [(seed, "authentication failed")] * 3
    both = [(alien.info.address, "cluster name differs"), (intruder.info.address, "authentication failed")]
    assert cluster.members[0].refusals == both * 3
    for outsider in (alien, intruder):
        assert outsider.running
        assert (outsider.events, ids(outsider)) == ([], set())
    for sim in cluster.members[:3]:
        assert ids(sim) == {m.info.id for m in cluster.members[:3] if m is not sim}
        assert len(sim.events) == 2


def test_a_member_that_left_is_not_brought_back_by_stale_gossip() -> None:
    cluster = SimCluster(4, seed=2)
    cluster.network.faults(min_delay=0.001, max_delay=0.2)
    run_until(cluster, cluster.converged)
    cluster.run_for(0.25)
    leaving = cluster.members[1]
    cluster.stop(leaving)
    cluster.run_for(10.0)
    for sim in cluster.members:
        if sim is not leaving:
            assert about(sim, leaving.info) == [MemberJoined(leaving.info), MemberLeft(leaving.info, "left")]


# -- randomised schedules -----------------------------------------------------------------------

SLOTS = 6
ALL_SEEDS = [("10.0.0.1", 4000 + slot) for slot in range(SLOTS)]
actions = st.one_of(
    st.tuples(st.sampled_from(["crash", "hang", "stop", "restart"]), st.integers(0, SLOTS - 1)),
    st.tuples(st.just("partition"), st.lists(st.booleans(), min_size=SLOTS, max_size=SLOTS)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("add")),
    st.tuples(st.just("run"), st.floats(0.05, 8.0)),
)


@settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.integers(3, 4),
    schedule=st.lists(actions, min_size=4, max_size=12),
    faulty=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_schedules_converge_once_healed(initial: int, schedule: list[tuple], faulty: bool, seed: int) -> None:
    # Every member's static seed list names all six slots, so whoever is up can be found.
    cluster = SimCluster(seed=seed)
    if faulty:
        cluster.network.faults(drop=0.1, duplicate=0.1, min_delay=0.001, max_delay=0.2)
    for slot in range(initial):
        cluster.add_member(f"node{slot + 1}", seeds=ALL_SEEDS)
    for action in schedule:
        kind, members = action[0], cluster.members
        target = members[action[1] % len(members)] if kind in ("crash", "hang", "stop", "restart") else None
        if kind == "crash" and target is not None and not target.crashed:
            cluster.crash(target)
        elif kind == "hang" and target is not None and target.running:
            cluster.hang(target)
        elif kind == "stop" and target is not None and target.running:
            cluster.stop(target)
        elif kind == "restart" and target is not None:
            cluster.restart(target)
        elif kind == "partition":
            cluster.network.partition(
                [m for m, side in zip(members, action[1], strict=False) if side],
                [m for m, side in zip(members, action[1], strict=False) if not side],
            )
        elif kind == "heal":
            cluster.network.heal()
        elif kind == "add" and len(members) < SLOTS:
            cluster.add_member(f"node{len(members) + 1}", seeds=ALL_SEEDS, address=cluster.address_of(len(members)))
        elif kind == "run":
            cluster.run_for(action[1])
    cluster.network.heal()
    cluster.network.faults()
    # A hung member needs drop_time + suspect_timeout to go; failed dials back off up to 5 s.
    cluster.run_until(cluster.converged, timeout=DROP_TIME + SUSPECT_TIMEOUT + 2 * MAX_BACKOFF)
    cluster.run_for(DROP_TIME + HEARTBEAT)  # and it stays converged
    assert cluster.converged()
    running = [m for m in cluster.members if m.running]
    gone = {m.info.id for m in cluster.members if not m.running}
    for sim in running:
        assert ids(sim) == {m.info.id for m in running if m is not sim}
        assert not ids(sim) & gone
        assert replayed(sim) == ids(sim)


def test_a_probe_that_still_finds_a_listener_after_a_disconnect_is_repeated_soon_then_less_often() -> None:
    # A SIGKILLed process closes its sockets one by one: the first probe can still reach
    # its listening socket. It is looked at again REPROBE_FIRST later, then at doubling
    # intervals up to a heartbeat, not after the whole drop time.
    membership = with_peers(A, now=0.0)
    assert membership.disconnected(A.id, 1.0) == [Probe(A)]
    probes = [1.0]
    now = 1.0
    while len(probes) < 6:
        if membership.probe_result(A.id, True, now + 0.001) != []:
            raise AssertionError("a probe that found a listener removed the member")
        now = round(now + 0.01, 2)
        if Probe(A) in membership.tick(now):
            probes.append(now)
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    expected = [REPROBE_FIRST, 2 * REPROBE_FIRST, 4 * REPROBE_FIRST, 8 * REPROBE_FIRST, HEARTBEAT]
    assert gaps == pytest.approx(expected, abs=0.0101)  # ticks every 0.01 s
    assert membership.probe_result(A.id, False, now + 0.001) == [MemberLeft(A, "crashed")]


def test_a_new_disconnect_starts_the_quick_probes_again() -> None:
    membership = with_peers(A, now=0.0)
    membership.disconnected(A.id, 1.0)
    membership.probe_result(A.id, True, 1.001)
    for step in range(1, 200):  # 2 s of ticks: the probes have slowed to one a heartbeat
        if Probe(A) in membership.tick(1.0 + step / 100):
            membership.probe_result(A.id, True, 1.0 + step / 100 + 0.001)
    membership.connected(A, 3.0)
    assert membership.disconnected(A.id, 3.5) == [Probe(A)]
    membership.probe_result(A.id, True, 3.501)
    assert Probe(A) not in membership.tick(3.54)
    assert Probe(A) in membership.tick(3.5 + REPROBE_FIRST)
