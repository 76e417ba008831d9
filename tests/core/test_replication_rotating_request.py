"""Messages and the timer that arrive while a request on this member is rotating the id."""

from __future__ import annotations

from .test_replication import A, B, delete, deliver, put, replicas


def test_a_stale_duplicate_that_arrives_during_a_local_rotation_does_not_overwrite_a_newer_value() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(x=0), 0.0).messages, b)
    old = a.request("s1", put(k=1), 1.0).messages  # (2, a)
    deliver(a, old, b)
    deliver(a, a.request("s1", put(k=2), 2.0).messages, b)  # (3, a): b holds k=2
    session = b.begin("s1", 3.0)
    session.rotate_id()  # a login on b: s1 -> s2, the request still running
    deliver(a, old, b, now=3.0)  # a duplicate of the older delta, late (the network duplicates)
    deliver(b, b.end(session, 3.0, "s1").messages, a)
    assert a.sessions() == b.sessions() == {"s2": {"x": 0, "k": 2}}


def test_a_remote_write_that_lands_during_a_local_rotation_keeps_its_stamp() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(x=0, k=0), 0.0).messages, b)
    stale = a.request("s1", put(k=1), 1.0).messages  # (2, a), delayed on its way to b
    newer = a.request("s1", put(k=2), 2.0).messages  # (3, a)
    session = b.begin("s1", 3.0)
    session.rotate_id()  # s1 -> s2 on b
    deliver(a, newer, b, now=3.0)  # lands on the copy in use, under s2
    deliver(b, b.end(session, 3.0, "s1").messages, a)
    deliver(a, stale, b, now=4.0)  # the older write arrives last: it must not win
    assert a.sessions() == b.sessions() == {"s2": {"x": 0, "k": 2}}


def test_the_timer_running_during_a_local_rotation_does_not_forget_the_session_s_stamps() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(x=0), 0.0).messages, b)
    older = a.request("s1", put(k=1), 1.0).messages  # (2, a)
    deliver(a, older, b)
    deliver(a, a.request("s1", delete("k"), 2.0).messages, b)  # (3, a): k removed everywhere
    session = b.begin("s1", 3.0)
    session.rotate_id()  # a login on b: s1 -> s2
    b.manager.tick(3.0)  # the node's timer runs while the request does
    deliver(b, b.end(session, 3.0, "s1").messages, a)
    deliver(a, older, b, now=4.0)  # a duplicate of the older write, late: k must stay removed
    assert a.sessions() == b.sessions() == {"s2": {"x": 0}}
