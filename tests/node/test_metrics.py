"""The counters and the lag histogram, driven directly: exact values, no sockets."""

from __future__ import annotations

import logging
import math
from types import MappingProxyType

import pytest

from replisession.core.channel import DeliveryStatus, SendOutcome
from replisession.core.messages import MemberInfo
from replisession.node.metrics import COUNTERS, LAG_BUCKETS, LagHistogram, Metrics

B = MemberInfo("b", "127.0.0.1", 4001, "b" * 32)
C = MemberInfo("c", "127.0.0.1", 4002, "c" * 32)


def outcome(request_id: int, *statuses: tuple[MemberInfo, DeliveryStatus]) -> SendOutcome:
    return SendOutcome(request_id, MappingProxyType({m.id: (m, s, "") for m, s in statuses}))


def test_a_histogram_puts_each_value_in_the_first_bucket_whose_bound_holds_it() -> None:
    histogram = LagHistogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.002, 0.01, 0.5):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 0, 1]  # le is inclusive; 0.5 is past every bound
    assert histogram.cumulative() == [(0.001, 2), (0.01, 4), (0.1, 4), (math.inf, 5)]
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(0.5135)


def test_quantiles_interpolate_within_the_bucket_as_prometheus_does() -> None:
    histogram = LagHistogram((0.001, 0.002, 0.004))
    assert histogram.quantile(0.5) is None
    for value in (0.0005,) * 2 + (0.0015,) * 6 + (0.003,) * 2:
        histogram.observe(value)
    # 10 values: rank 5 falls in (0.001, 0.002], 3 of its 6 values in: 0.001 + 0.001 * 3/6.
    assert histogram.quantile(0.5) == pytest.approx(0.0015)
    assert histogram.quantile(0.2) == pytest.approx(0.001)
    assert histogram.quantile(0.9) == pytest.approx(0.003)
    histogram.observe(9.0)  # beyond the last bound: the estimate stops at that bound
    assert histogram.quantile(1.0) == 0.004
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram.quantile(1.5)


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        LagHistogram((0.1, 0.01))
    assert LagHistogram().bounds == LAG_BUCKETS


def test_every_counter_starts_at_zero_and_is_listed_with_its_help() -> None:
    metrics = Metrics()
    assert metrics.counters() == dict.fromkeys(COUNTERS, 0)
    assert all(text.endswith(".") for text in COUNTERS.values())


def test_a_waited_delta_is_counted_and_timed_from_write_to_the_last_acknowledgement() -> None:
    metrics = Metrics()
    metrics.sent("delta", [B, C], 7, now=10.0, waited=True)
    metrics.completed(outcome(7, (B, DeliveryStatus.OK), (C, DeliveryStatus.OK)), now=10.0008)
    assert metrics.deltas_sent == 1
    assert metrics.lag.count == 1
    assert metrics.lag.sum == pytest.approx(0.0008)
    assert metrics.lag.counts[LAG_BUCKETS.index(0.001)] == 1


def test_what_is_not_a_waited_delta_to_someone_is_not_timed() -> None:
    metrics = Metrics()
    metrics.sent("delta", [], 1, now=1.0, waited=False)  # nobody to send to: nothing sent
    metrics.sent("delta", [B], 2, now=1.0, waited=False)  # async: counted, never acknowledged
    metrics.sent("access", [B], 3, now=1.0, waited=True)  # not a delta
    metrics.completed(outcome(3, (B, DeliveryStatus.OK)), now=2.0)
    assert metrics.deltas_sent == 1
    assert metrics.lag.count == 0


def test_failed_and_timed_out_members_are_counted_per_member_and_the_send_is_not_timed() -> None:
    metrics = Metrics()
    metrics.sent("delta", [B, C], 5, now=1.0, waited=True)
    metrics.completed(outcome(5, (B, DeliveryStatus.TIMEOUT), (C, DeliveryStatus.GONE)), now=4.0)
    metrics.completed(outcome(6, (B, DeliveryStatus.FAILED), (C, DeliveryStatus.TIMEOUT)), now=4.0)
    assert (metrics.ack_timeouts, metrics.send_failures) == (2, 2)
    assert metrics.lag.count == 0


def test_received_deltas_are_applied_or_rejected_and_transfers_are_counted() -> None:
    metrics = Metrics()
    metrics.received("delta", {}, None)
    metrics.received("delta", {}, None)
    metrics.received("delta", {}, "RemoteProtocolError: bad")
    metrics.received("sessions", {"sessions": [{}, {}, {}], "last": False}, None)
    metrics.received("sessions", {"sessions": [{}], "last": True}, None)
    metrics.received("sessions", "garbage", "RemoteProtocolError: bad")  # refused: not counted
    metrics.received("access", {}, None)
    assert (metrics.deltas_received, metrics.deltas_applied, metrics.deltas_rejected) == (3, 2, 1)
    assert (metrics.sessions_transferred, metrics.state_transfers_received) == (4, 1)


def test_a_failover_is_counted_and_logged_once_and_a_cookie_without_route_is_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger="replisession"):
        metrics.failover("node1", "node2")
        metrics.failover(None, "node2")
    assert metrics.failovers == 1
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "replisession.failover",
            logging.INFO,
            "failover: a session routed to 'node1' is now served by 'node2'; its cookie is re-issued",
        )
    ]


def test_remembered_send_starts_are_bounded() -> None:
    metrics = Metrics()
    for request_id in range(70_000):
        metrics.sent("delta", [B], request_id, now=0.0, waited=True)
    assert len(metrics._waiting) == 65536
    assert 0 not in metrics._waiting
    assert 69_999 in metrics._waiting
