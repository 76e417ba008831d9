"""What a member reports about itself: a JSON-ready snapshot, and the same in Prometheus text.

Everything derived is computed here, when someone asks (a scrape, ``replisession
status``), never on the request path: sessions by state walk a snapshot of the
store's ids (without holding its lock while they do), and quantiles come from the
histogram's buckets.

The Prometheus rendering is the text exposition format, version 0.0.4: a ``# HELP``
and a ``# TYPE`` line before each metric's samples, every name prefixed
``replisession_``, counters suffixed ``_total``, and the lag as a histogram with
cumulative ``le`` buckets, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.listeners import DestroyReason
from ..core.membership import MemberState
from .metrics import COUNTERS

if TYPE_CHECKING:
    from .member import ClusterMember
    from .sessions import Node

__all__ = ["PROMETHEUS_CONTENT_TYPE", "TRANSPORT_COUNTERS", "prometheus", "snapshot"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Counters the peer channel keeps itself (they start again from zero with the member).
TRANSPORT_COUNTERS: dict[str, str] = {
    "peer_sent_bytes": "Bytes of frames written to peer connections (after the handshake) since the member started.",
    "peer_received_bytes": "Bytes read from peer connections (handshakes included) since the member started.",
}


def snapshot(node: Node) -> dict[str, Any]:
    """This member, the others as it sees them, its sessions, counters and replication lag."""
    member = node.member
    running = member is not None and member.running
    local = member.local if member is not None and running else None
    counters: dict[str, int] = node.metrics.counters()
    counters.update(_transport_counters(member if running else None))
    lag = node.metrics.lag
    primary, replica = _sessions_by_state(node)
    store = node.store
    return {
        "member": {
            "route": node.config.route,
            "address": _address(local.host, local.port) if local is not None else None,
            "incarnation": local.incarnation if local is not None else None,
            "cluster": node.cluster.cluster_name if node.cluster is not None and node.cluster.enabled else None,
            "send_mode": node.cluster.send_mode if node.cluster is not None and node.cluster.enabled else None,
            "running": node.running,
        },
        "members": _members(member) if running and member is not None else [],
        "sessions": {
            "primary": primary,
            "replica": replica,
            "created": store.created,
            "expired": store.ended[DestroyReason.EXPIRED],
            "invalidated": store.ended[DestroyReason.INVALIDATED],
        },
        "counters": counters,
        "lag": {
            "count": lag.count,
            "sum": lag.sum,
            "p50": lag.quantile(0.5),
            "p99": lag.quantile(0.99),
            # Cumulative, keyed by the bucket's upper bound as Prometheus writes it.
            "buckets": {_number(le): n for le, n in lag.cumulative()},
        },
    }


def _sessions_by_state(node: Node) -> tuple[int, int]:
    """(primary, replica): sessions this member served last, and copies of other members' sessions.

    Without replication every session is this member's own.
    """
    ids = node.store.ids()
    replicator = node.replicator
    manager = replicator.manager if replicator is not None else None
    if manager is None:
        return len(ids), 0
    local = manager.local.id
    primary = 0
    for session_id in ids:
        owner = manager.owner_of(session_id)
        if owner is None or owner == local:
            primary += 1
    return primary, len(ids) - primary


def _members(member: ClusterMember) -> list[dict[str, Any]]:
    # The member's public API gives the list; the state of each is the membership's
    # (core), read here rather than widening the member's API for one report.
    membership = member._membership
    out = []
    for info in member.members():
        state = membership.state_of(info.id) if membership is not None else None
        out.append(
            {
                "route": info.route,
                "address": _address(info.host, info.port),
                "state": (state or MemberState.ALIVE).value,
                "incarnation": info.incarnation,
            }
        )
    return sorted(out, key=lambda m: (m["route"] or "", m["address"]))


def _transport_counters(member: ClusterMember | None) -> dict[str, int]:
    transport = member._transport if member is not None else None
    return {
        "peer_sent_bytes": transport.bytes_sent if transport is not None else 0,
        "peer_received_bytes": transport.bytes_received if transport is not None else 0,
    }


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- Prometheus text format ------------------------------------------------------------------


def prometheus(report: dict[str, Any]) -> str:
    """The snapshot in the Prometheus text exposition format (0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, dict[str, str], float]]) -> None:
        full = f"replisession_{name}"
        lines.append(f"# HELP {full} {_escape_help(help_text)}")
        lines.append(f"# TYPE {full} {kind}")
        for suffix, labels, value in samples:
            lines.append(f"{full}{suffix}{_labels(labels)} {_number(value)}")

    me = report["member"]
    member_labels = {"route": me["route"] or "", "address": me["address"] or "", "incarnation": me["incarnation"] or ""}
    metric(
        "member_info",
        "gauge",
        "This member: its route, peer address and incarnation (always 1).",
        [("", member_labels, 1)],
    )
    members = report["members"]
    metric(
        "members",
        "gauge",
        "Other members as this member sees them, by state.",
        [("", {"state": state.value}, sum(m["state"] == state.value for m in members)) for state in MemberState],
    )
    metric(
        "peer_info",
        "gauge",
        "Each other member as this member sees it (always 1).",
        [("", {key: m[key] or "" for key in ("route", "address", "incarnation", "state")}, 1) for m in members],
    )
    sessions = report["sessions"]
    metric(
        "sessions",
        "gauge",
        "Sessions held here: primary (this member served them last) and replica (copies of other members' sessions).",
        [("", {"state": state}, sessions[state]) for state in ("primary", "replica")],
    )
    metric("sessions_created_total", "counter", "Sessions begun on this member.", [("", {}, sessions["created"])])
    metric(
        "sessions_ended_total",
        "counter",
        "Sessions this member ended, by reason (expired, or invalidated by the app).",
        [("", {"reason": reason}, sessions[reason]) for reason in ("expired", "invalidated")],
    )
    counters = report["counters"]
    for name, help_text in (*COUNTERS.items(), *TRANSPORT_COUNTERS.items()):
        metric(f"{name}_total", "counter", help_text, [("", {}, counters[name])])
    lag = report["lag"]
    metric(
        "replication_lag_seconds",
        "histogram",
        "Seconds from writing a delta to the last member's acknowledgement (ack and sync send modes).",
        [
            *(("_bucket", {"le": le}, count) for le, count in lag["buckets"].items()),
            ("_sum", {}, lag["sum"]),
            ("_count", {}, lag["count"]),
        ],
    )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
