"""Members started at the same instant on one listen range each claim a port of their own.

Regression: the port was bound, and listened on only later. Two processes could both
bind a port with SO_REUSEADDR in between; uvloop then swallowed the loser's failed
``listen()``, and two members advertised one address (the demo once formed a cluster in
which node3 "restarted" node2). With 6 workers, 20 of 40 rounds drew a duplicate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from replisession.cli.demo_cluster import free_port_range

from .servers import kill_group

SCRIPT = Path(__file__).with_name("listen_race.py")
WORKERS = 6
ROUNDS = 10


def test_workers_started_together_on_one_range_claim_distinct_ports() -> None:
    first, last = free_port_range(WORKERS + 2)
    command = [sys.executable, str(SCRIPT), str(first), str(last), str(WORKERS), str(ROUNDS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        output, errors = process.communicate(timeout=120)
    finally:
        kill_group(process)
    assert process.returncode == 0, errors.decode()
    rounds = [json.loads(line) for line in output.decode().splitlines()]
    assert len(rounds) == ROUNDS
    for claimed in rounds:
        assert all(isinstance(port, int) and first <= port <= last for port in claimed), claimed
        assert len(set(claimed)) == WORKERS, f"two workers claimed one port: {sorted(claimed)}"
