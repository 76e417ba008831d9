"""A request's in-place change of a value while a remote write of the same key lands."""

from __future__ import annotations

from .test_replication import A, B, delete, deliver, put, replicas


def test_an_in_place_change_made_by_a_request_is_not_lost_when_a_remote_write_lands_meanwhile() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(cart=[1]), 1.0).messages, b)
    session = a.begin("s1", 2.0)
    session["cart"].append(2)  # in place: found at release (a plain set would have been kept)
    deliver(b, b.request("s1", put(cart=[9]), 2.0).messages, a)  # b's concurrent write lands on a meanwhile
    done = a.end(session, 3.0, "s1")
    deliver(a, done.messages, b)
    # a's release stamps after it saw b's write: a's change is the later one, as for session["cart"] = [1, 2]
    assert a.sessions() == b.sessions() == {"s1": {"cart": [1, 2]}}


def test_an_in_place_change_made_by_a_request_is_not_lost_when_a_remote_removal_lands_meanwhile() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(cart=[1], x=0), 1.0).messages, b)
    session = a.begin("s1", 2.0)
    session["cart"].append(2)
    deliver(b, b.request("s1", delete("cart"), 2.0).messages, a)  # b removes it meanwhile
    deliver(a, a.end(session, 3.0, "s1").messages, b)
    assert a.sessions() == b.sessions() == {"s1": {"cart": [1, 2], "x": 0}}


def test_a_value_a_request_only_read_takes_the_remote_write_and_sends_nothing() -> None:
    a, b = replicas(A, B)
    deliver(a, a.request(None, put(cart=[1]), 1.0).messages, b)
    session = a.begin("s1", 2.0)
    assert session["cart"] == [1]  # read, not changed
    deliver(b, b.request("s1", put(cart=[9]), 2.0).messages, a)
    done = a.end(session, 3.0, "s1")
    assert [m.kind for m in done.messages if m.kind == "delta"] == []
    assert a.sessions() == b.sessions() == {"s1": {"cart": [9]}}
