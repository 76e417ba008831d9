"""Expiry of a replica's copy while the session is in use on its owner."""

from __future__ import annotations

from replisession.core.store import SessionPolicy

from .test_replication import A, B, answered, deliver, put, read, replicas


def test_a_replica_that_never_served_the_session_keeps_it_whole_while_a_long_request_runs_on_the_owner() -> None:
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))  # copies: 100 s idle + 25 s grace
    deliver(a, a.request(None, put(x=1, y=2), 0.0).messages, b, now=0.0)
    session = a.begin("s1", 10.0)  # a long request (a download, a long poll) holds the session on a
    session["y"] = 3
    assert b.store.sweep(130.0) == 1  # b's copy looks idle: dropped silently, a still uses the session
    done = a.end(session, 140.0, "s1")
    answered(a, done.messages, b, now=140.0)
    # the owner's session is {x: 1, y: 3}; b re-creates its copy from the delta, then asks for the rest
    assert b.sessions() == a.sessions() == {"s1": {"x": 1, "y": 3}}


def test_expiry_on_a_replica_never_ends_a_session_its_owner_is_using() -> None:
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b served it once (failover)
    deliver(a, a.request("s1", read("x"), 2.0).messages, b, now=2.0)  # and a again: a owns it
    session = a.begin("s1", 10.0)  # a long request on the owner
    session["x"] = 2
    ended = b.sweep(130.0)  # b's copy looks idle: b ends the session everywhere
    deliver(b, ended, a, now=130.0)
    done = a.end(session, 140.0, "s1")
    deliver(a, done.messages, b, now=140.0)
    assert a.sessions() == b.sessions() == {"s1": {"x": 2}}
