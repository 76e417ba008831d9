"""What tombstones and rotation edges protect, and for how long (a session's own timeout, repeated transfers)."""

from __future__ import annotations

from collections.abc import Callable

from replisession.core.session import Session
from replisession.core.store import SessionPolicy

from .replication_sim import Replica
from .test_replication import A, B, deliver, put, replicas


def timeout(seconds: float) -> Callable[[Session], None]:
    return lambda session: setattr(session, "max_inactive_interval", seconds)


def exchange(a: Replica, b: Replica, now: float) -> None:
    """A healed partition (or a rejoin): each member transfers everything to the other."""
    deliver(a, list(a.manager.stream(b.info, lambda: now)), b, now=now)
    deliver(b, list(b.manager.stream(a.info, lambda: now)), a, now=now)


def test_an_invalidated_session_with_a_long_timeout_is_not_resurrected_after_the_tombstone_horizon() -> None:
    # Policy: 100 s idle, so tombstones live 2 * 100 + 25 = 225 s. This session was given 1000 s.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, lambda s: (s.update(x=1), timeout(1000)(s)), 0.0).messages, b, now=0.0)
    a.request("s1", lambda s: s.invalidate(), 10.0)  # b is cut off: the end never reaches it
    b.manager.tick(400.0)
    b.store.sweep(400.0)
    assert b.sessions() == {"s1": {"x": 1}}  # still valid there by its own 1000 s timeout
    a.manager.tick(400.0)  # a forgets the tombstone after 225 s
    exchange(a, b, 400.0)  # the partition heals
    assert a.sessions() == b.sessions() == {}


def test_a_rotated_id_with_a_long_timeout_does_not_come_back_as_a_second_live_id() -> None:
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, lambda s: (s.update(x=1), timeout(1000)(s)), 0.0).messages, b, now=0.0)
    new = a.request("s1", lambda s: s.rotate_id(), 10.0).session_id  # login; b is cut off
    assert new == "s2"
    a.manager.tick(400.0)  # a forgets the rotation's edge after 225 s
    exchange(a, b, 400.0)
    assert a.sessions() == b.sessions() == {"s2": {"x": 1}}
    assert a.store.load("s1", 401.0) is None  # the id from before the login opens nothing


def test_tombstones_are_forgotten_even_when_members_exchange_state_more_often_than_the_horizon() -> None:
    # Default policy: 1800 s idle, tombstones kept 2 * 1800 + 60 = 3660 s.
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(x=1), 0.0).messages, b)
    deliver(a, a.request("s1", lambda s: s.invalidate(), 1.0).messages, b)
    now = 1.0
    for _ in range(20):  # a member that flaps (a rejoin every 30 min): they exchange state
        now += 1800.0
        exchange(a, b, now)
        a.manager.tick(now)
        b.manager.tick(now)
    # 36,000 s later, ten horizons: an id that ended that long ago must be forgotten by now
    assert (a.manager.is_dead("s1"), b.manager.is_dead("s1")) == (False, False)


def test_rotation_edges_are_forgotten_even_when_members_exchange_state_more_often_than_the_horizon() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(x=1), 0.0).messages, b)
    deliver(a, a.request("s1", lambda s: s.rotate_id(), 1.0).messages, b)  # s1 -> s2
    now = 1.0
    for _ in range(20):
        now += 1800.0
        exchange(a, b, now)
        a.manager.tick(now)
        b.manager.tick(now)
    (*_, last) = a.manager.stream(B, lambda: now)
    assert last.payload["aliases"] == []  # 36,000 s after the login, ten horizons
