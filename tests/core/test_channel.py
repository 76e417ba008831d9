"""Send modes and per-member outcomes: the sans-IO Channel, then sends across SimCluster."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import pytest

from replisession.core.channel import Channel, Delivery, DeliveryStatus, SendOutcome
from replisession.core.membership import MemberLeft
from replisession.core.messages import Ack, Data, MemberInfo, SendMode
from replisession.testing import SimCluster, SimMember

OK, TIMEOUT, FAILED, GONE = DeliveryStatus.OK, DeliveryStatus.TIMEOUT, DeliveryStatus.FAILED, DeliveryStatus.GONE


def member(route: str, port: int, incarnation: int) -> MemberInfo:
    return MemberInfo(route, "10.0.0.1", port, f"{incarnation:032x}")


A = member("a", 4001, 1)
B = member("b", 4002, 2)
C = member("c", 4003, 3)


def outcome(request_id: int, *results: tuple[MemberInfo, DeliveryStatus, str]) -> SendOutcome:
    return SendOutcome(request_id, MappingProxyType({info.id: (info, status, why) for info, status, why in results}))


# -- Channel -------------------------------------------------------------------------------------


def test_async_send_completes_at_once() -> None:
    channel = Channel()
    sent = channel.send([A, B], "delta", {"k": 1}, SendMode.ASYNC, 10.0, 3.0)
    assert sent == (1, Data(1, SendMode.ASYNC, "delta", {"k": 1}), outcome(1, (A, OK, ""), (B, OK, "")))
    assert (channel.pending, channel.next_deadline()) == (0, None)
    assert channel.tick(100.0) == []


@pytest.mark.parametrize("mode", list(SendMode))
def test_a_send_to_nobody_completes_at_once_with_no_results(mode: SendMode) -> None:
    channel = Channel()
    request_id, data, done = channel.send([], "delta", None, mode, 10.0, 3.0)
    assert (request_id, data, done) == (1, Data(1, mode, "delta", None), SendOutcome(1))
    assert done is not None
    assert done.ok
    assert done.failures() == []
    assert channel.pending == 0


@pytest.mark.parametrize("mode", [SendMode.ACK, SendMode.SYNC])
def test_ack_and_sync_sends_wait_for_every_target(mode: SendMode) -> None:
    channel = Channel()
    assert channel.send([A, B], "delta", "x", mode, 10.0, 3.0) == (1, Data(1, mode, "delta", "x"), None)
    assert (channel.pending, channel.next_deadline()) == (1, 13.0)
    assert channel.acknowledged(B, Ack(1)) == []
    [done] = channel.acknowledged(A, Ack(1))
    assert done == outcome(1, (A, OK, ""), (B, OK, ""))
    assert done.ok
    assert done.failures() == []
    assert (channel.pending, channel.next_deadline()) == (0, None)


def test_request_ids_increase_and_each_target_counts_once() -> None:
    channel = Channel()
    assert channel.send([A, A, B], "k", 1, SendMode.SYNC, 0.0, 1.0)[0] == 1
    assert channel.send([A], "k", 2, SendMode.ASYNC, 0.0, 1.0)[0] == 2
    assert channel.send([B], "k", 3, SendMode.ACK, 0.0, 1.0)[0] == 3
    assert channel.acknowledged(A, Ack(1)) == []
    assert channel.acknowledged(B, Ack(1)) == [outcome(1, (A, OK, ""), (B, OK, ""))]


def test_negative_acknowledgement_is_failed_naming_member_and_error() -> None:
    channel = Channel()
    channel.send([A, B], "delta", None, SendMode.SYNC, 0.0, 3.0)
    channel.acknowledged(A, Ack(1))
    [done] = channel.acknowledged(B, Ack(1, ok=False, error="ValueError: bad delta"))
    assert done == outcome(1, (A, OK, ""), (B, FAILED, "ValueError: bad delta"))
    assert not done.ok
    assert done.failures() == [(B, FAILED, "ValueError: bad delta")]


def test_late_duplicate_and_foreign_acks_are_ignored() -> None:
    channel = Channel()
    channel.send([A, B], "delta", None, SendMode.SYNC, 0.0, 3.0)
    assert channel.acknowledged(A, Ack(1, ok=False, error="first")) == []
    assert channel.acknowledged(A, Ack(1)) == []  # duplicate: the first answer stands
    assert channel.acknowledged(C, Ack(1)) == []  # not a target
    assert channel.acknowledged(B, Ack(99)) == []  # no such request
    assert channel.acknowledged(B, Ack(1)) == [outcome(1, (A, FAILED, "first"), (B, OK, ""))]
    assert channel.acknowledged(B, Ack(1)) == []  # late: the send already ended
    assert channel.pending == 0


def test_one_ack_answers_several_sends_its_first_as_it_says_the_others_as_ok() -> None:
    channel = Channel()
    for n in range(4):
        channel.send([A, B], "delta", n, SendMode.SYNC, 0.0, 3.0)
    assert channel.acknowledged(A, Ack(1, more=(2, 3, 4))) == []
    done = channel.acknowledged(B, Ack(2, ok=False, error="KeyError: x", more=(1, 99, 3, 2, 4)))
    assert done == [
        outcome(2, (A, OK, ""), (B, FAILED, "KeyError: x")),
        outcome(1, (A, OK, ""), (B, OK, "")),  # 99: no such send; the second 2: a duplicate
        outcome(3, (A, OK, ""), (B, OK, "")),
        outcome(4, (A, OK, ""), (B, OK, "")),
    ]
    assert channel.pending == 0


def test_member_gone_ends_every_send_waiting_on_it() -> None:
    channel = Channel()
    channel.send([A, B], "one", None, SendMode.SYNC, 0.0, 3.0)
    channel.send([B], "two", None, SendMode.ACK, 0.0, 3.0)
    channel.send([A, C], "three", None, SendMode.SYNC, 0.0, 3.0)
    channel.acknowledged(A, Ack(1))
    assert channel.member_gone(B) == [
        outcome(1, (A, OK, ""), (B, GONE, "left the cluster")),
        outcome(2, (B, GONE, "left the cluster")),
    ]
    assert channel.pending == 1
    assert channel.member_gone(B) == []
    assert channel.member_gone(A) == []  # request 3 still waits on C
    assert channel.acknowledged(A, Ack(3)) == []  # A's answer was already recorded as gone
    assert channel.acknowledged(C, Ack(3)) == [outcome(3, (A, GONE, "left the cluster"), (C, OK, ""))]


def test_tick_times_out_what_is_still_missing() -> None:
    channel = Channel()
    channel.send([A, B], "one", None, SendMode.SYNC, 0.0, 3.0)
    channel.send([C], "two", None, SendMode.ACK, 1.0, 1.0)
    assert channel.next_deadline() == 2.0
    assert channel.tick(1.99) == []
    assert channel.tick(2.0) == [outcome(2, (C, TIMEOUT, "no acknowledgement in time"))]
    assert channel.next_deadline() == 3.0
    channel.acknowledged(A, Ack(1))
    assert channel.tick(3.0) == [outcome(1, (A, OK, ""), (B, TIMEOUT, "no acknowledgement in time"))]
    assert (channel.pending, channel.next_deadline(), channel.tick(100.0)) == (0, None, [])
    assert channel.acknowledged(B, Ack(1)) == []  # too late


def test_tick_ends_several_sends_at_once_in_order() -> None:
    channel = Channel()
    channel.send([A], "one", None, SendMode.SYNC, 0.0, 2.0)
    channel.send([A], "two", None, SendMode.SYNC, 0.0, 1.0)
    assert channel.tick(5.0) == [
        outcome(1, (A, TIMEOUT, "no acknowledgement in time")),
        outcome(2, (A, TIMEOUT, "no acknowledgement in time")),
    ]


def test_a_cancelled_send_waits_for_nobody_any_more() -> None:
    channel = Channel()
    request_id, _, _ = channel.send([A, B], "delta", 1, SendMode.SYNC, 0.0, 3.0)
    channel.acknowledged(A, Ack(request_id))
    channel.cancel(request_id)  # it could not be written to B
    assert (channel.pending, channel.next_deadline()) == (0, None)
    assert channel.tick(10.0) == []  # no timeout reported for it later
    channel.cancel(request_id)  # twice, or an unknown id: nothing


def test_receiving_data_per_mode() -> None:
    channel = Channel()
    for mode, needs_ack, ack in [
        (SendMode.ASYNC, False, None),
        (SendMode.ACK, False, Ack(5)),  # acknowledged on receipt, before the handler runs
        (SendMode.SYNC, True, None),  # acknowledged by applied() once the handler ran
    ]:
        data = Data(5, mode, "delta", [1])
        assert channel.received(A, data) == (Delivery(A, data, needs_ack=needs_ack), ack)


def test_applied_acknowledges_success_or_the_error() -> None:
    delivery = Delivery(A, Data(9, SendMode.SYNC, "delta", None), needs_ack=True)
    assert Channel.applied(delivery) == Ack(9, ok=True, error="")
    assert Channel.applied(delivery, "KeyError: 'x'") == Ack(9, ok=False, error="KeyError: 'x'")
    assert Channel.applied(delivery, "x" * 1000) == Ack(9, ok=False, error="x" * 256)


def test_send_outcome_defaults() -> None:
    empty = SendOutcome(7)
    assert (empty.request_id, dict(empty.results), empty.ok, empty.failures()) == (7, {}, True, [])
    mixed = outcome(8, (A, OK, ""), (B, TIMEOUT, "t"), (C, GONE, "g"))
    assert mixed.failures() == [(B, TIMEOUT, "t"), (C, GONE, "g")]
    with pytest.raises(TypeError):
        mixed.results[A.id] = (A, OK, "")  # type: ignore[index]


@pytest.mark.parametrize("timeout", [math.nan, -1.0])
def test_send_rejects_a_timeout_that_is_not_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Channel().send([A], "delta", None, SendMode.SYNC, 0.0, timeout)


# -- sends across a SimCluster -------------------------------------------------------------------


def converged(size: int, **kwargs: Any) -> SimCluster:
    cluster = SimCluster(size, **kwargs)
    cluster.run_until(cluster.converged, timeout=5)
    return cluster


def wait_outcome(cluster: SimCluster, sender: SimMember, request_id: int, timeout: float = 10.0) -> SendOutcome:
    cluster.run_until(lambda: request_id in sender.outcomes, timeout=timeout)
    return sender.outcomes[request_id]


def record(kind: str, sims: list[SimMember]) -> dict[str, list[Any]]:
    """A handler on every member that appends the payload to that member's list."""
    applied: dict[str, list[Any]] = {sim.info.id: [] for sim in sims}
    for sim in sims:
        sim.handlers[kind] = lambda target, sender, payload: applied[target.info.id].append(payload)
    return applied


class OutcomeSpy(dict[int, SendOutcome]):
    """``SimMember.outcomes`` that snapshots the targets' handler results when each outcome lands."""

    def __init__(self, applied: dict[str, list[Any]]) -> None:
        super().__init__()
        self.applied = applied
        self.seen_at_outcome: dict[int, dict[str, list[Any]]] = {}

    def __setitem__(self, request_id: int, value: SendOutcome) -> None:
        self.seen_at_outcome[request_id] = {mid: list(values) for mid, values in self.applied.items()}
        super().__setitem__(request_id, value)


def test_sync_send_completes_only_after_every_handler_ran() -> None:
    cluster = converged(4)
    sender, *targets = cluster.members
    applied = record("delta", targets)
    sender.outcomes = spy = OutcomeSpy(applied)
    request_id = cluster.send(sender, "delta", {"cart": 3})
    assert request_id not in spy  # nothing is acknowledged before the network ran
    done = wait_outcome(cluster, sender, request_id)
    assert done == outcome(request_id, *((t.info, OK, "") for t in targets))
    # When the outcome appeared, every target's handler had already run.
    assert spy.seen_at_outcome[request_id] == {t.info.id: [{"cart": 3}] for t in targets}
    assert [t.received for t in targets] == [[(sender.info, "delta", {"cart": 3})]] * 3


def test_ack_send_completes_when_every_target_received() -> None:
    cluster = converged(3)
    sender, *targets = cluster.members
    applied = record("delta", targets)
    request_id = cluster.send(sender, "delta", 1, SendMode.ACK)
    assert wait_outcome(cluster, sender, request_id) == outcome(request_id, *((t.info, OK, "") for t in targets))
    assert applied == {t.info.id: [1] for t in targets}


def test_ack_mode_does_not_report_a_failing_handler() -> None:
    # ``ack`` means received, not applied (Tomcat USE_ACK without SYNC_ACK): use ``sync`` to hear of errors.
    cluster = converged(2)
    sender, target = cluster.members

    def fail(*_: Any) -> None:
        raise RuntimeError("disk full")

    target.handlers["delta"] = fail
    request_id = cluster.send(sender, "delta", 1, SendMode.ACK)
    assert wait_outcome(cluster, sender, request_id) == outcome(request_id, (target.info, OK, ""))


def test_async_send_returns_at_once_and_is_delivered_later() -> None:
    cluster = converged(3)
    sender, *targets = cluster.members
    applied = record("delta", targets)
    request_id = cluster.send(sender, "delta", "x", SendMode.ASYNC)
    assert sender.outcomes[request_id] == outcome(request_id, *((t.info, OK, "") for t in targets))
    assert applied == {t.info.id: [] for t in targets}
    cluster.run_for(0.1)
    assert applied == {t.info.id: ["x"] for t in targets}


def test_a_handler_that_raises_fails_the_sync_send_naming_member_and_error() -> None:
    cluster = converged(3)
    sender, good, bad = cluster.members
    record("delta", [good])

    def fail(*_: Any) -> None:
        raise RuntimeError("disk full")

    bad.handlers["delta"] = fail
    request_id = cluster.send(sender, "delta", 1)
    done = wait_outcome(cluster, sender, request_id)
    assert done == outcome(request_id, (good.info, OK, ""), (bad.info, FAILED, "RuntimeError: disk full"))
    assert done.failures() == [(bad.info, FAILED, "RuntimeError: disk full")]


def test_crashed_target_is_reported_gone() -> None:
    cluster = converged(3)
    sender, alive, dead = cluster.members
    cluster.crash(dead)
    request_id = cluster.send(sender, "delta", 1)  # before the crash was noticed
    assert dead.info in sender.membership.members()
    done = wait_outcome(cluster, sender, request_id)
    assert done == outcome(request_id, (alive.info, OK, ""), (dead.info, GONE, "left the cluster"))
    assert MemberLeft(dead.info, "crashed") in sender.events
    assert dead.received == []


def test_hung_target_times_out_after_the_send_timeout() -> None:
    cluster = converged(3, send_timeout=1.5)
    sender, alive, hung = cluster.members
    cluster.hang(hung)
    start = cluster.clock()
    request_id = cluster.send(sender, "delta", 1)
    done = wait_outcome(cluster, sender, request_id)
    assert round(cluster.clock() - start, 3) == 1.5  # the configured timeout, not drop_time
    assert done == outcome(request_id, (alive.info, OK, ""), (hung.info, TIMEOUT, "no acknowledgement in time"))
    assert hung.info in sender.membership.members()  # not even suspect yet


def test_duplicated_data_is_delivered_twice_but_counted_once() -> None:
    cluster = converged(3, seed=3)
    sender, *targets = cluster.members
    applied = record("delta", targets)
    cluster.network.faults(duplicate=0.999)
    request_id = cluster.send(sender, "delta", "x")
    done = wait_outcome(cluster, sender, request_id)
    cluster.run_for(0.1)
    # The channel does not deduplicate DATA: handlers see the duplicate (the replication layer's
    # per-session versions make a repeated delta harmless). The second ACK is ignored.
    assert applied == {t.info.id: ["x", "x"] for t in targets}
    assert done == outcome(request_id, *((t.info, OK, "") for t in targets))
    assert sender.channel.pending == 0


def test_send_to_an_explicit_subset_of_members() -> None:
    cluster = converged(3)
    sender, chosen, other = cluster.members
    applied = record("delta", [chosen, other])
    request_id = cluster.send(sender, "delta", 5, targets=[chosen.info])
    assert wait_outcome(cluster, sender, request_id) == outcome(request_id, (chosen.info, OK, ""))
    assert applied == {chosen.info.id: [5], other.info.id: []}


def test_send_with_no_other_member_completes_at_once() -> None:
    cluster = converged(1)
    (alone,) = cluster.members
    request_id = cluster.send(alone, "delta", 1)
    assert alone.outcomes[request_id] == SendOutcome(request_id)
