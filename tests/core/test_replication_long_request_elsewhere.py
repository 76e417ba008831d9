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
    # Only a non-owner's expiry is silent, and the owner is the member that served the session
    # last. A long request elsewhere keeps the session alive on every member with a notice from
    # its member's timer every access_throttle (25 s here) while it runs; before, it sent nothing
    # until it ended, and the owner's expiry ended the session under it (its write lost).
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b serves it: b owns it
    session = a.begin("s1", 10.0)  # the balancer sends a long request to a
    session["x"] = 2
    for now in (30.0, 60.0, 90.0, 120.0):  # a's timer
        deliver(a, a.sweep(now), b, now=now)
        deliver(b, b.sweep(now), a, now=now)
    assert b.manager.owner_of("s1") == B.id  # kept alive, not taken over
    assert b.sweep(130.0) == []  # b's copy was used at 120: not idle
    deliver(a, a.end(session, 140.0, "s1").messages, b, now=140.0)
    assert a.sessions() == b.sessions() == {"s1": {"x": 2}}


def test_a_long_request_that_never_uses_the_session_does_not_decide_when_it_ends() -> None:
    # The notices keep copies alive; they do not make their sender the owner. A request that
    # loaded the session and never used it (a download with the cookie) must leave expiry to
    # the member the user really uses: its own copy's idle clock is not reset by that request,
    # so as the owner it would end the session everywhere before its time.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    assert a.request("s1", read("x"), 10.0).messages == []  # the user reads on a (notice throttled)
    download = b.begin("s1", 20.0)
    deliver(b, b.sweep(30.0), a, now=30.0)  # b's notice: in use there
    assert a.manager.owner_of("s1") == A.id
    assert b.end(download, 40.0, "s1").messages == []  # never used: nothing more
    deliver(b, b.sweep(126.0), a, now=126.0)  # b's copy, last used at 0, is idle past its grace
    assert b.sessions() == {}
    assert a.sessions() == {"s1": {"x": 1}}  # a's copy was used at 30: b's expiry was quiet
