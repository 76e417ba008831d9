"""Expiry of a copy while a long request uses the session on another member."""

from __future__ import annotations

from replisession.core.store import SessionPolicy

from .test_replication import A, B, answered, deliver, put, read, replicas


def test_a_replica_whose_copy_expired_during_a_long_read_only_request_on_the_owner_gets_it_back() -> None:
    # The usual long request (a download, a long poll) only reads: it ends with an access notice,
    # not a delta, and _apply_access ignores a session b does not hold. b's copy, dropped silently,
    # never comes back while a keeps serving reads; if a dies, the session is gone.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))  # copies: 100 s + 25 s grace
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    session = a.begin("s1", 10.0)
    read("x")(session)
    assert b.store.sweep(130.0) == 1  # b's copy looks idle: dropped silently
    answered(a, a.end(session, 140.0, "s1").messages, b, now=140.0)
    answered(a, a.request("s1", read("x"), 170.0).messages, b, now=170.0)  # and a keeps serving it
    assert b.sessions() == a.sessions() == {"s1": {"x": 1}}


def test_expiry_on_the_owner_never_ends_a_session_a_long_request_uses_on_another_member() -> None:
    # Only a non-owner's expiry is silent. Were the owner the member that served the session last,
    # a long request elsewhere would send nothing before it ends, and the owner's expiry would end
    # the session everywhere under that request: its write lost (release finds it gone). A request
    # takes the session over as it begins.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b serves it: b owns it
    session = a.begin("s1", 10.0)  # the balancer sends a long request to a: a takes the session over
    deliver(a, a.take_claims(), b, now=10.0)
    session["x"] = 2
    deliver(b, b.sweep(130.0), a, now=130.0)  # b's copy looks idle
    deliver(a, a.end(session, 140.0, "s1").messages, b, now=140.0)
    assert a.sessions() == b.sessions() == {"s1": {"x": 2}}
