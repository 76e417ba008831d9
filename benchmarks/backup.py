"""Backup benchmark: the primary/backup BackupManager against the all-to-all DeltaManager.

Run by hand, never by pytest::

    .venv/bin/python benchmarks/backup.py messages [--sizes 2 3 4 5 6 7 8] [--writes 2000]
    .venv/bin/python benchmarks/backup.py throughput [--rounds 3] [--duration 10]
    .venv/bin/python benchmarks/backup.py restore [--sizes 10000 100000] [--members 3 4]
    .venv/bin/python benchmarks/backup.py memory [--sessions 10000]

``messages`` drives the sans-IO managers in this process; the others start members as
processes on 127.0.0.1 (``uvicorn apps:asgi_cluster``, or bare nodes run as
``replication.py _worker``), each in a session of its own and stopped by its pid, also on
Ctrl-C or SIGTERM. Each subcommand prints its tables and merges its section into
``benchmarks/results/backup.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

from _backup_http import throughput
from _backup_messages import messages
from _backup_nodes import memory, restore
from _harness import BENCH_DIR, environment, exit_on_sigterm, run_script

RESULTS_FILE = BENCH_DIR / "results" / "backup.json"

SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "messages": messages,
    "throughput": throughput,
    "restore": restore,
    "memory": memory,
}


def save(output: Path, name: str, section: dict[str, Any]) -> None:
    """Merge one section into the JSON file (other sections from earlier runs are kept)."""
    report: dict[str, Any] = {"benchmark": "backup", "sections": {}}
    if output.exists():
        with contextlib.suppress(ValueError):
            report = json.loads(output.read_text())
    env = environment(None, ("replisession", "starlette", "uvicorn", "msgpack", "httptools"))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report.setdefault("sections", {})[name] = {"time": stamp, "environment": env, **section}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="the JSON file sections are merged into")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("messages", help="messages and bytes per write as the cluster grows, in memory")
    p.add_argument("--sizes", nargs="+", type=int, default=list(range(2, 9)), help="cluster sizes (2 .. 8)")
    p.add_argument("--sessions", type=int, default=50, help="sessions the writes are spread over (50)")
    p.add_argument("--writes", type=int, default=2000, help="writes counted per size and variant (2000)")

    p = sub.add_parser("throughput", help="3 HTTP members, wrk on A: DeltaManager vs BackupManager(k=1)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds wrk measures each variant (10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--idle", type=float, default=1.0, help="seconds of idle CPU measured per variant (1)")
    p.add_argument("--mode", choices=("async", "ack", "sync"), default="sync")

    p = sub.add_parser("restore", help="SIGKILL of the primary of N sessions until 1 + k copies again")
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--members", nargs="+", type=int, default=[3, 4], help="cluster sizes, 3 or more (3 4)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--deadline", type=float, default=300.0, help="seconds the restore may take (300)")
    p.add_argument(
        "--fill-window", type=int, default=1000, help="A waits for its sends every N sessions it makes (1000; 0: never)"
    )

    p = sub.add_parser("memory", help="bytes per session on a primary and on a (packed) backup")
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=2)

    args = parser.parse_args(argv)
    exit_on_sigterm()
    section = SECTIONS[args.command](args)
    save(args.output, args.command, section)
    print(f"\nresults merged into {args.output}")
    return 0


if __name__ == "__main__":
    run_script(main)
