"""The demo stops its members together: SIGTERM to all, SIGKILL to those still running after
the grace period, each reaped and named."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from replisession.cli.demo_cluster import DemoCluster, DemoMember

LEAVES = "import time; time.sleep(60)"  # SIGTERM's default action ends it
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(60)"
)


def member(tmp_path: Path, route: str, code: str) -> DemoMember:
    return DemoMember(route, 0, {}, [sys.executable, "-c", code], tmp_path / f"{route}.log")


def test_members_get_sigterm_together_and_the_stubborn_one_is_killed(tmp_path: Path) -> None:
    cluster = DemoCluster(tmp_path, tmp_path, 2)  # nothing starts yet; its members are replaced
    cluster.members = [member(tmp_path, "node1", STUBBORN), member(tmp_path, "node2", LEAVES)]
    for each in cluster.members:
        each.start()
    deadline = time.monotonic() + 30
    while "ignoring" not in (tmp_path / "node1.log").read_text():
        assert time.monotonic() < deadline, "the stubborn member never started"
        time.sleep(0.02)  # polling inside a deadline
    stopped, killed = cluster.stop(grace=0.5)
    assert [m.route for m in stopped] == ["node1", "node2"]
    assert [m.route for m in killed] == ["node1"]
    assert not any(m.alive for m in cluster.members)
    assert "ignoring SIGTERM" in killed[0].log_tail()
    assert cluster.stop() == ([], [])
