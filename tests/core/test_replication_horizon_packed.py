"""How long ended and rotated ids are remembered when the copy is packed, or was rotated in the ending request."""

from __future__ import annotations

from replisession.core.store import SessionPolicy

from .test_replication import A, B, C, deliver, replicas
from .test_replication_horizon import exchange, timeout

# Policy: 100 s idle, so the policy's horizon is 2 * 100 + 25 = 225 s. The sessions here were
# given 1000 s of their own, so their ids must be remembered 2 * 1000 + 25 s.


def test_rotating_and_invalidating_in_one_request_keeps_the_old_id_buried_for_the_sessions_own_timeout() -> None:
    # The store hook (466e055) moves the session's Meta to the new id as soon as the request
    # rotates it; the destroyed delta names the old id, and _bury(old) then finds no Meta and
    # uses the policy's 225 s (the new id, which no other member knew, gets 2025 s).
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, lambda s: (s.update(x=1), timeout(1000)(s)), 0.0).messages, b, now=0.0)
    a.request("s1", lambda s: (s.rotate_id(), s.invalidate()), 10.0)  # log in, then out; b is cut off
    a.manager.tick(400.0)
    exchange(a, b, 400.0)  # the partition heals: b's copy (valid 1000 s) must go
    assert a.sessions() == b.sessions() == {}


def test_a_dormant_copy_ended_by_a_delta_is_buried_for_the_sessions_own_timeout() -> None:
    # A joiner holds transferred copies packed, with no Meta; with no session listeners (the
    # default) store.drop does not wake it, so _bury finds no Meta.idle and uses 225 s.
    a, b, j = replicas(A, B, C, policy=SessionPolicy(max_inactive_interval=100))
    j.store.listeners.clear()  # the node's default: no session listeners
    deliver(a, a.request(None, lambda s: (s.update(x=1), timeout(1000)(s)), 0.0).messages, b, now=0.0)
    deliver(a, list(a.manager.stream(C, lambda: 5.0)), j, now=5.0)  # j joins: the copy stays packed
    deliver(a, a.request("s1", lambda s: s.invalidate(), 10.0).messages, j, now=10.0)  # b is cut off
    j.manager.tick(400.0)
    exchange(b, j, 400.0)  # b comes back and meets j: b's copy, valid 1000 s, must go
    assert j.sessions() == b.sessions() == {}


def test_a_dormant_copy_rotated_by_a_delta_keeps_the_edge_for_the_sessions_own_timeout() -> None:
    # _apply_alias links the edge before _fold wakes the packed copy: _alias finds no Meta under
    # either id and keeps the edge 225 s; after that the id from before the login comes back live.
    a, b, j = replicas(A, B, C, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, lambda s: (s.update(x=1), timeout(1000)(s)), 0.0).messages, b, now=0.0)
    deliver(a, list(a.manager.stream(C, lambda: 5.0)), j, now=5.0)  # j joins: the copy stays packed
    deliver(a, a.request("s1", lambda s: s.rotate_id(), 10.0).messages, j, now=10.0)  # login; b is cut off
    j.manager.tick(400.0)
    exchange(b, j, 400.0)
    assert j.sessions() == {"s2": {"x": 1}}  # not also s1: a second live id (session fixation)
