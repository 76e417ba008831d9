"""The public test helpers themselves: FakeClock, InMemoryNetwork, SimCluster."""

from __future__ import annotations

import math
from typing import Any

import pytest

from replisession import testing
from replisession.core.membership import Effect, MemberJoined, MemberLeft
from replisession.testing import FakeClock, InMemoryNetwork, SimCluster, SimMember


def test_public_names() -> None:
    assert sorted(testing.__all__) == ["FakeClock", "InMemoryNetwork", "SimCluster", "SimMember"]


# -- FakeClock -------------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == 1000.0
    assert clock.advance(2.5) == 1002.5
    assert clock.advance(0) == 1002.5
    clock.set(1010.0)
    clock.set(1010.0)
    assert clock() == 1010.0
    assert FakeClock(start=3)() == 3.0
    assert isinstance(FakeClock(start=3)(), float)


def test_fake_clock_never_goes_back() -> None:
    clock = FakeClock(start=5.0)
    with pytest.raises(ValueError, match="a monotonic clock cannot go back"):
        clock.advance(-0.001)
    with pytest.raises(ValueError, match="a monotonic clock cannot go back"):
        clock.set(4.999)
    assert clock() == 5.0


# -- InMemoryNetwork -------------------------------------------------------------------------------


def test_network_defaults_are_fault_free() -> None:
    network = InMemoryNetwork(FakeClock())
    assert (network.drop, network.duplicate, network.min_delay, network.max_delay) == (0.0, 0.0, 0.001, 0.001)
    assert network.delay() == 0.001
    assert network.next_due() is None


@pytest.mark.parametrize(
    "faults",
    [
        {"drop": 1.0},
        {"drop": -0.1},
        {"duplicate": 1.0},
        {"duplicate": -0.1},
        {"min_delay": 0.0},
        {"min_delay": -1.0},
        {"min_delay": 0.2, "max_delay": 0.1},
        {"drop": math.nan},
    ],
)
def test_faults_are_validated(faults: dict[str, float]) -> None:
    network = InMemoryNetwork(FakeClock())
    with pytest.raises(ValueError, match="drop and duplicate are probabilities below 1, delays positive and ordered"):
        network.faults(**faults)
    assert (network.drop, network.duplicate, network.min_delay, network.max_delay) == (0.0, 0.0, 0.001, 0.001)


def test_faults_are_set_together_and_reset_by_default() -> None:
    network = InMemoryNetwork(FakeClock(), seed=4)
    network.faults(drop=0.25, duplicate=0.5, min_delay=0.01, max_delay=0.2)
    assert (network.drop, network.duplicate, network.min_delay, network.max_delay) == (0.25, 0.5, 0.01, 0.2)
    delays = [network.delay() for _ in range(200)]
    assert all(0.01 <= d <= 0.2 for d in delays)
    assert len(set(delays)) == 200
    network.faults()
    assert (network.drop, network.duplicate, network.min_delay, network.max_delay) == (0.0, 0.0, 0.001, 0.001)


def test_delays_come_from_the_seed() -> None:
    def delays(seed: int) -> list[float]:
        network = InMemoryNetwork(FakeClock(), seed=seed)
        network.faults(min_delay=0.001, max_delay=1.0)
        return [network.delay() for _ in range(10)]

    assert delays(1) == delays(1)
    assert delays(1) != delays(2)


def test_scheduled_actions_run_in_due_order_fifo_on_ties() -> None:
    clock = FakeClock(start=0.0)
    network = InMemoryNetwork(clock)
    ran: list[str] = []
    network.schedule(0.2, lambda: ran.append("late"))
    network.schedule(0.1, lambda: ran.append("first"))
    network.schedule(0.1, lambda: ran.append("second"))
    network.schedule(0.1, lambda: network.schedule(0.0, lambda: ran.append("chained")))
    assert network.next_due() == 0.1
    network.run_due(0.05)
    assert ran == []
    network.run_due(0.1)  # an action scheduled for now by a due action runs in the same pass
    assert ran == ["first", "second", "chained"]
    assert network.next_due() == 0.2
    network.run_due(1.0)
    assert ran == ["first", "second", "chained", "late"]
    assert network.next_due() is None


def sims(count: int) -> list[SimMember]:
    cluster = SimCluster(count)
    return cluster.members


def test_partition_and_heal() -> None:
    network = InMemoryNetwork(FakeClock())
    a, b, c, d = sims(4)
    assert all(network.reachable(x, y) for x in (a, b, c, d) for y in (a, b, c, d))
    network.partition([a, b], [c])
    assert network.reachable(a, b)
    assert network.reachable(b, a)
    assert network.reachable(c, c)
    assert not network.reachable(a, c)
    assert not network.reachable(c, b)
    # A member in no group is alone, even with itself.
    assert not any(network.reachable(d, x) or network.reachable(x, d) for x in (a, b, c, d))
    network.partition([a], [b, c, d])  # a new partition replaces the old one
    assert network.reachable(b, d)
    assert not network.reachable(a, b)
    network.heal()
    assert all(network.reachable(x, y) for x in (a, b, c, d) for y in (a, b, c, d))


def test_links_are_symmetric_connections() -> None:
    network = InMemoryNetwork(FakeClock())
    a, b, c = sims(3)
    assert not network.linked(a, b)
    network.link(a, b)
    assert network.linked(b, a)
    assert not network.linked(a, c)
    assert network.unlink(b, a) is True
    assert network.unlink(a, b) is False
    assert not network.linked(a, b)


def test_partition_does_not_close_connections() -> None:
    cluster = SimCluster(2)
    cluster.run_until(cluster.converged, timeout=5)
    a, b = cluster.members
    cluster.network.partition([a], [b])
    assert cluster.network.linked(a, b)  # only the failure detector ends it


# -- SimCluster ------------------------------------------------------------------------------------


def test_sim_cluster_layout() -> None:
    cluster = SimCluster(3)
    assert [m.route for m in cluster.members] == ["node1", "node2", "node3"]
    assert [m.info.address for m in cluster.members] == [("10.0.0.1", 4000), ("10.0.0.1", 4001), ("10.0.0.1", 4002)]
    assert [m.membership.seeds for m in cluster.members] == [(), (("10.0.0.1", 4000),), (("10.0.0.1", 4000),)]
    assert len({m.info.incarnation for m in cluster.members}) == 3
    assert all(m.running and m.cluster == "replisession" and m.secret == b"" for m in cluster.members)
    assert (cluster.heartbeat_interval, cluster.drop_time, cluster.send_timeout) == (0.5, 3.0, 3.0)
    assert cluster.converged() is False
    cluster.run_until(cluster.converged, timeout=5)
    assert cluster.members[0].member_routes() == {"node2", "node3"}


def test_sim_cluster_passes_timings_to_every_member() -> None:
    cluster = SimCluster(2, heartbeat_interval=0.25, drop_time=1.0)
    assert [(m.membership.heartbeat_interval, m.membership.drop_time) for m in cluster.members] == [(0.25, 1.0)] * 2


def test_sim_cluster_shares_a_given_clock() -> None:
    clock = FakeClock(start=50.0)
    cluster = SimCluster(2, clock=clock)
    cluster.run_for(1.0)
    assert clock() == 51.0
    assert cluster.network.clock is clock


def test_crash_hang_and_stop_states() -> None:
    cluster = SimCluster(4)
    cluster.run_until(cluster.converged, timeout=5)
    _, crashed, hung, stopped = cluster.members
    cluster.crash(crashed)
    cluster.hang(hung)
    cluster.stop(stopped)
    assert (crashed.crashed, crashed.hung, crashed.running) == (True, False, False)
    assert (hung.crashed, hung.hung, hung.running) == (False, True, False)
    assert stopped.running  # sends LEAVE, then exits
    cluster.run_for(0.1)
    assert (stopped.crashed, stopped.running) == (True, False)


def test_restart_keeps_route_address_seeds_and_settings() -> None:
    cluster = SimCluster(3)
    cluster.run_until(cluster.converged, timeout=5)
    old = cluster.add_member("special", cluster="other", secret=b"s", seeds=[("10.0.0.9", 1)])
    new = cluster.restart(old)
    assert old.crashed
    assert old not in cluster.members
    assert new in cluster.members
    assert (new.route, new.info.address, new.cluster, new.secret) == ("special", old.info.address, "other", b"s")
    assert new.membership.seeds == (("10.0.0.9", 1),)
    assert new.info.incarnation != old.info.incarnation
    assert new.events == []
    assert new.running


def test_run_until_returns_the_simulated_time_taken() -> None:
    cluster = SimCluster(2)
    assert cluster.run_until(lambda: True) == 0.0
    start = cluster.clock()
    took = cluster.run_until(lambda: cluster.clock() >= start + 1.0)
    assert round(took, 6) == 1.0


def test_run_until_timeout_raises() -> None:
    cluster = SimCluster(2)
    start = cluster.clock()
    with pytest.raises(TimeoutError, match=r"condition not reached within 2\.0 simulated seconds"):
        cluster.run_until(lambda: False, timeout=2.0)
    assert 2.0 <= cluster.clock() - start <= 2.0 + 2 * cluster.heartbeat_interval / 5


# -- determinism -------------------------------------------------------------------------------


def timed_log(seed: int) -> list[tuple[float, str | None, str, str | None, str]]:
    """A fixed fault schedule; every event with when it happened, who heard it and about whom."""
    cluster = SimCluster(5, seed=seed)
    cluster.network.faults(drop=0.2, duplicate=0.2, min_delay=0.001, max_delay=0.2)
    log: list[tuple[float, str | None, str, str | None, str]] = []

    class Log(list[Effect]):
        def __init__(self, owner: SimMember) -> None:
            super().__init__()
            self.owner = owner

        def append(self, event: Effect) -> None:
            reason = event.reason if isinstance(event, MemberLeft) else ""
            log.append((round(cluster.clock(), 6), self.owner.route, type(event).__name__, event.member.route, reason))
            super().append(event)

    def watch(*members: SimMember) -> None:
        for sim in members:
            sim.events = Log(sim)

    watch(*cluster.members)
    cluster.run_for(2.0)
    a, b, c, d, e = cluster.members
    cluster.crash(b)
    cluster.hang(c)
    cluster.run_for(4.0)
    cluster.stop(d)
    cluster.run_for(1.0)
    restarted = cluster.restart(b)
    watch(restarted)
    cluster.network.partition([a, c, e], [restarted])
    cluster.run_for(4.0)
    cluster.network.heal()
    cluster.run_for(25.0)
    return log


def test_same_seed_same_history_different_seed_different_history() -> None:
    first = timed_log(11)
    assert first == timed_log(11)
    other = timed_log(12)
    assert other != first
    # The same things happen, at other moments.
    for log in (first, other):
        assert {(kind, about, reason) for _, _, kind, about, reason in log} >= {
            ("MemberJoined", "node2", ""),
            ("MemberLeft", "node2", "crashed"),
            ("MemberSuspected", "node3", ""),
            ("MemberLeft", "node3", "unresponsive"),
        }
        # node4 stopped gracefully; with 20% of messages dropped its LEAVE may be lost,
        # and then failure detection removes it instead.
        assert {reason for _, _, kind, about, reason in log if kind == "MemberLeft" and about == "node4"} <= {
            "left",
            "crashed",
        }
        assert any(kind == "MemberLeft" and about == "node4" for _, _, kind, about, _ in log)
    assert [when for when, *_ in first] != [when for when, *_ in other]


def test_incarnations_come_from_the_seed() -> None:
    def incarnations(seed: int) -> list[str]:
        return [m.info.incarnation for m in SimCluster(3, seed=seed).members]

    assert incarnations(5) == incarnations(5)
    assert incarnations(5) != incarnations(6)


# -- known defects -------------------------------------------------------------------------------


def test_add_member_never_reuses_an_address_in_use() -> None:
    cluster = SimCluster()
    first = cluster.add_member("first", address=cluster.address_of(1))
    second = cluster.add_member("second")
    assert second.info.address != first.info.address


def test_a_hung_seed_that_restarts_is_found_again() -> None:
    cluster = SimCluster(3)
    cluster.run_until(cluster.converged, timeout=5)
    seed = cluster.members[0]
    cluster.hang(seed)
    cluster.run_for(20.0)  # removed as unresponsive, then redialled: the dial never ends
    cluster.restart(seed)
    cluster.run_until(cluster.converged, timeout=30)


def test_events_recorded_are_listener_events_only() -> None:
    cluster = SimCluster(3)
    cluster.run_until(cluster.converged, timeout=5)
    cluster.crash(cluster.members[2])
    cluster.run_for(1.0)
    events: list[Any] = [e for m in cluster.members for e in m.events]
    # Only what listeners hear: no Connect, SendTo, Probe or Disconnect effects.
    assert {type(e) for e in events} == {MemberJoined, MemberLeft}
