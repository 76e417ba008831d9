"""A copy made by a delta that arrived before its session, then used by a request."""

from __future__ import annotations

from .test_replication import A, B, C, answered, delete, deliver, put, replicas


def test_a_request_on_a_partial_copy_does_not_end_the_session_everywhere() -> None:
    a, b, j = replicas(A, B, C)
    deliver(a, a.request(None, put(x=1), 1.0).messages, b)  # acknowledged: every member then had it
    j.manager.request_transfer([A, B], 2.0)  # j joins; its transfers are still on their way
    answered(a, a.request("s1", put(y=2), 3.0).messages, b, j)  # j: a copy of this delta alone, then the rest
    # a dies; the balancer fails over to j, where a request removes y
    done = j.request("s1", delete("y"), 4.0)
    deliver(j, done.messages, b, now=4.0)
    deliver(b, list(b.manager.stream(C, lambda: 5.0)), j, now=5.0)  # j's transfer from b completes
    assert b.sessions() == j.sessions() == {"s1": {"x": 1}}
