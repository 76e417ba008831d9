"""``replisession status`` without a member: its argument and the table it prints."""

from __future__ import annotations

import pytest

from replisession.cli import build_parser
from replisession.cli.status import StatusError, format_report, parse_address


def test_addresses_are_host_and_port() -> None:
    assert parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_address("app.internal:80") == ("app.internal", 80)
    assert parse_address("[::1]:8000") == ("::1", 8000)
    for bad in ("127.0.0.1", ":8000", "host:0", "host:65536", "host:http"):
        with pytest.raises(StatusError, match="is not HOST:PORT"):
            parse_address(bad)


def test_the_command_is_registered_with_its_defaults() -> None:
    args = build_parser().parse_args(["status", "127.0.0.1:8000"])
    assert (args.address, args.path, args.json, args.timeout) == ("127.0.0.1:8000", "/replisession/metrics", False, 5.0)


def test_a_member_without_a_cluster_and_without_lag() -> None:
    report = {
        "member": {
            "route": None,
            "address": None,
            "incarnation": None,
            "cluster": None,
            "send_mode": None,
            "running": True,
        },
        "members": [],
        "sessions": {"primary": 4, "replica": 0, "created": 5, "expired": 1, "invalidated": 0},
        "counters": {"deltas_sent": 0},
        "lag": {"count": 0, "sum": 0.0, "p50": None, "p99": None, "buckets": {"+Inf": 0}},
    }
    assert format_report(report).splitlines() == [
        "member (no route) (no cluster configured)",
        "",
        "ROUTE  ADDRESS  STATE  INCARNATION",
        "-      -        self   -",
        "",
        "sessions: 4 primary, 0 replica (created here 5, expired 1, invalidated 0)",
        "",
        "REPLICATION",
        "deltas sent / received                     0 / 0",
        "deltas applied / rejected                  0 / 0",
        "send failures / ack timeouts               0 / 0",
        "peer bytes sent / received                 0 / 0",
        "state transfers sent / stopped / received  0 / 0 / 0",
        "sessions received by transfer              0",
        "failovers (cookies re-routed here)         0",
        "members joined / suspected / left          0 / 0 / 0",
        "",
        "replication lag: no acknowledged deltas yet (measured in ack and sync send modes)",
    ]
