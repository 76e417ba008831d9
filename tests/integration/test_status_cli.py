"""``replisession status`` against real member processes (the FastAPI example) on loopback."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replisession.cli.status import StatusError, fetch_report

from .cluster_helpers import FASTAPI, Cluster, Member
from .servers import BIN, free_port

pytestmark = pytest.mark.integration

PATH = "/replisession/metrics"


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[Member]]:
    cluster = Cluster(FASTAPI, tmp_path)
    try:
        started = cluster.start("node1", "node2", metrics_path=PATH)
        deadline = time.monotonic() + 15
        while not all(_sees(m, other) for m, other in ((started[0], "node2"), (started[1], "node1"))):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.05)  # polling interval inside a deadline
        yield started
    finally:
        cluster.stop()


def _sees(member: Member, route: str) -> bool:
    try:
        report = fetch_report("127.0.0.1", member.http_port, PATH, 2.0)
    except StatusError:
        return False
    return [(m["route"], m["state"]) for m in report["members"]] == [(route, "alive")]


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "replisession"), "status", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_status_prints_the_members_sessions_and_replication_of_a_running_member(members: list[Member]) -> None:
    node1, node2 = members
    assert node1.call("POST", "/counter").json()["counter"] == 1
    result = status(f"127.0.0.1:{node1.http_port}")
    assert result.returncode == 0, result.stderr
    report = fetch_report("127.0.0.1", node1.http_port, PATH, 2.0)
    me, other = report["member"], report["members"][0]
    lines = result.stdout.splitlines()
    assert lines[0] == "member node1 (cluster 'replisession', send mode sync)"
    table = [line.split() for line in lines[2:5]]
    assert table == [
        ["ROUTE", "ADDRESS", "STATE", "INCARNATION"],
        ["node1", me["address"], "self", me["incarnation"]],
        ["node2", other["address"], "alive", other["incarnation"]],
    ]
    assert "sessions: 1 primary, 0 replica (created here 1, expired 0, invalidated 0)" in lines
    counters = {line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1].strip() for line in lines if " / " in line}
    assert counters["deltas sent / received"] == "1 / 0"
    assert counters["send failures / ack timeouts"] == "0 / 0"
    lag = [line for line in lines if line.startswith("replication lag (delta written to last acknowledgement): p50 ")]
    assert len(lag) == 1
    assert lag[0].endswith(" ms (1 measured)")

    on_node2 = status(f"127.0.0.1:{node2.http_port}", "--json")
    assert on_node2.returncode == 0, on_node2.stderr
    seen = json.loads(on_node2.stdout)
    assert seen["sessions"]["replica"] == 1
    assert seen["counters"]["deltas_applied"] == 1


def test_status_fails_clearly_when_the_member_is_unreachable_or_serves_no_metrics(members: list[Member]) -> None:
    closed = free_port()
    unreachable = status(f"127.0.0.1:{closed}", "--timeout", "2")
    assert unreachable.returncode == 1
    assert unreachable.stdout == ""
    assert unreachable.stderr.startswith(
        f"replisession status: cannot reach http://127.0.0.1:{closed}{PATH}: [Errno 111] Connection refused"
    )
    elsewhere = status(f"127.0.0.1:{members[0].http_port}", "--path", "/not-metrics")
    assert elsewhere.returncode == 1
    assert elsewhere.stderr == (
        f"replisession status: http://127.0.0.1:{members[0].http_port}/not-metrics answered 404: the member "
        "serves no metrics there. Start it with REPLISESSION_METRICS_PATH=/not-metrics (or metrics_path=), "
        "or pass the path it uses with --path\n"
    )
    bad = status("no-port-here")
    assert (bad.returncode, bad.stderr) == (
        1,
        "replisession status: 'no-port-here' is not HOST:PORT (for example 127.0.0.1:8000)\n",
    )
