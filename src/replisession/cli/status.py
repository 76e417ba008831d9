"""``replisession status HOST:PORT``: what a running member reports about itself and its cluster.

It reads the member's opt-in metrics endpoint over HTTP (the app must run with
``REPLISESSION_METRICS_PATH`` or ``metrics_path=``) and prints the members,
session counts, replication counters and lag as a table, or the raw JSON with
``--json``. An unreachable member, or one that serves no metrics, is an error
(exit status 1) that says which.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from typing import Any, TextIO

__all__ = ["DEFAULT_PATH", "StatusError", "fetch_report", "format_report", "register"]

DEFAULT_PATH = "/replisession/metrics"


class StatusError(Exception):
    """The report could not be read; the message says why and what to check."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a running member's cluster view, sessions, replication counters and lag",
        description="Read a running member's metrics endpoint (REPLISESSION_METRICS_PATH) and print it.",
    )
    parser.add_argument("address", metavar="HOST:PORT", help="the member's HTTP address, e.g. 127.0.0.1:8000")
    parser.add_argument(
        "--path", default=DEFAULT_PATH, help=f"the member's REPLISESSION_METRICS_PATH (default {DEFAULT_PATH})"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON, unchanged")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the member (default 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        host, port = parse_address(args.address)
        report = fetch_report(host, port, args.path, args.timeout)
    except StatusError as exc:
        print(f"replisession status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(format_report(report))
    return 0


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StatusError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8000)")
    return host, int(port)


def fetch_report(host: str, port: int, path: str, timeout: float) -> dict[str, Any]:
    """GET the JSON report; a StatusError names what went wrong."""
    if not path.startswith("/"):
        raise StatusError(f"--path {path!r} must start with '/'")
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise StatusError(f"cannot reach {where}: {exc}") from exc
    finally:
        connection.close()
    if response.status == 404:
        raise StatusError(
            f"{where} answered 404: the member serves no metrics there. Start it with "
            f"REPLISESSION_METRICS_PATH={path} (or metrics_path=), or pass the path it uses with --path"
        )
    if response.status != 200:
        raise StatusError(f"{where} answered {response.status} {response.reason}")
    try:
        report = json.loads(body)
    except ValueError as exc:
        raise StatusError(f"{where} did not answer a replisession report (not JSON: {exc})") from exc
    if not isinstance(report, dict) or not {"member", "members", "sessions", "counters", "lag"} <= report.keys():
        raise StatusError(f"{where} did not answer a replisession report")
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a few readable tables."""
    me = report["member"]
    lines = []
    where = f"cluster {me['cluster']!r}, send mode {me['send_mode']}" if me["cluster"] else "no cluster configured"
    lines.append(f"member {me['route'] or '(no route)'} ({where})")
    lines.append("")
    rows: list[tuple[str, ...]] = [("ROUTE", "ADDRESS", "STATE", "INCARNATION")]
    rows.append(
        (me["route"] or "-", me["address"] or "-", "self" if me["running"] else "stopped", me["incarnation"] or "-")
    )
    for member in report["members"]:
        rows.append((member["route"] or "-", member["address"], member["state"], member["incarnation"]))
    lines.extend(_table(rows))
    lines.append("")
    sessions = report["sessions"]
    lines.append(
        f"sessions: {sessions['primary']} primary, {sessions['replica']} replica "
        f"(created here {sessions['created']}, expired {sessions['expired']}, invalidated {sessions['invalidated']})"
    )
    lines.append("")
    counters = report["counters"]
    rows = [("REPLICATION", "")]  # a second table
    for label, names in _COUNTER_ROWS:
        rows.append((label, " / ".join(str(counters.get(name, 0)) for name in names)))
    lines.extend(_table(rows))
    lines.append("")
    lag = report["lag"]
    if lag["count"]:
        lines.append(
            f"replication lag (delta written to last acknowledgement): p50 {_ms(lag['p50'])}, "
            f"p99 {_ms(lag['p99'])}, mean {_ms(lag['sum'] / lag['count'])} ({lag['count']} measured)"
        )
    else:
        lines.append("replication lag: no acknowledged deltas yet (measured in ack and sync send modes)")
    return "\n".join(lines) + "\n"


_COUNTER_ROWS = (
    ("deltas sent / received", ("deltas_sent", "deltas_received")),
    ("deltas applied / rejected", ("deltas_applied", "deltas_rejected")),
    ("send failures / ack timeouts", ("send_failures", "ack_timeouts")),
    ("peer bytes sent / received", ("peer_sent_bytes", "peer_received_bytes")),
    (
        "state transfers sent / stopped / received",
        ("state_transfers_sent", "state_transfers_stopped", "state_transfers_received"),
    ),
    ("sessions received by transfer", ("sessions_transferred",)),
    ("failovers (cookies re-routed here)", ("failovers",)),
    ("members joined / suspected / left", ("members_joined", "members_suspected", "members_left")),
)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"
