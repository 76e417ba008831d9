"""A session's own idle timeout, reset to the default, reaches a member through a state transfer."""

from __future__ import annotations

from collections.abc import Callable

from replisession.core.session import Session

from .test_replication import A, B, deliver, put, replicas


def timeout(seconds: float | None) -> Callable[[Session], None]:
    return lambda session: setattr(session, "max_inactive_interval", seconds)


def test_a_timeout_reset_to_the_default_reaches_a_member_that_missed_it_through_a_transfer() -> None:
    a, b = replicas(A, B)  # default policy: 1800 s
    deliver(a, a.request(None, put(x=1), 0.0).messages, b)
    deliver(a, a.request("s1", timeout(10), 1.0).messages, b)  # b: 10 s
    a.request("s1", timeout(None), 2.0)  # back to the default; b is cut off and misses it
    deliver(a, list(a.manager.stream(B, lambda: 3.0)), b, now=3.0)  # healed: a transfers everything
    assert a.store.peek("s1").max_inactive_interval == 1800.0  # type: ignore[union-attr]
    assert b.store.peek("s1").max_inactive_interval == 1800.0  # type: ignore[union-attr]
    assert b.store.sweep(100.0) == 0  # b must not expire, after 100 s, a session a keeps for 1800
