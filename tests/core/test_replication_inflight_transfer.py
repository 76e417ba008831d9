"""A state transfer built while a request on the donor is creating a session."""

from __future__ import annotations

from .test_replication import A, C, deliver, replicas


def test_a_session_created_and_emptied_by_one_request_does_not_survive_on_a_joiner() -> None:
    a, j = replicas(A, C)
    j.manager.request_transfer([A], 0.0)
    session = a.begin(None, 1.0)
    session["flash"] = "hi"  # the session is stored (created) while the request runs
    transfer = list(a.manager.stream(C, lambda: 1.0))  # a joiner's transfer is built meanwhile
    del session["flash"]  # emptied by the same request: ended before it was ever replicated
    done = a.end(session, 1.0)
    assert (done.session_id, done.messages, a.sessions()) == (None, [], {})
    deliver(a, transfer, j, now=2.0)
    assert j.sessions() == a.sessions() == {}


def test_a_session_created_and_rotated_by_one_request_has_one_id_on_a_joiner() -> None:
    a, j = replicas(A, C)
    j.manager.request_transfer([A], 0.0)
    session = a.begin(None, 1.0)
    session["user"] = "u"  # stored as s1 while the request runs
    transfer = list(a.manager.stream(C, lambda: 1.0))
    assert session.rotate_id() == "s2"  # a login in the same request
    done = a.end(session, 1.0)
    deliver(a, transfer, j, now=2.0)
    deliver(a, done.messages, j, now=2.0)
    assert j.sessions() == a.sessions() == {"s2": {"user": "u"}}
