"""A partial copy (made of a delta alone) passed on to another member stays partial."""

from __future__ import annotations

from .test_replication import A, B, C, answered, delete, deliver, member, put, replicas

D = member("d", 4)


def test_a_copy_transferred_from_a_partial_copy_is_partial_too() -> None:
    # _entries packs a partial copy like any other, and _apply_entry clears Meta.partial on the
    # receiver: k then serves part of the session as the whole one (Replicator.fetch does not
    # fetch a held, non-partial copy whose route's member is gone), and emptying it ends it.
    a, b, j, k = replicas(A, B, C, D)
    deliver(a, a.request(None, put(x=1), 1.0).messages, b)  # acknowledged: every member then had it
    j.manager.request_transfer([A, B], 2.0)  # j joins; its transfers are still on their way
    deliver(a, a.request("s1", put(y=2), 3.0).messages, b, j)  # j: a partial copy; a dies before answering
    assert j.manager.partial("s1")
    k.manager.request_transfer([B, C], 4.0)  # k joins; j's transfer comes first
    deliver(j, list(j.manager.stream(D, lambda: 4.0)), k, now=4.0)
    if k.manager.partial("s1"):  # what Replicator.fetch does first: ask the members
        answered(k, [k.manager.fetch(["s1"], (B,))], b, now=5.0)
    deliver(k, k.request("s1", delete("y"), 5.0).messages, b, now=5.0)  # failover to k
    assert b.sessions() == k.sessions() == {"s1": {"x": 1}}
