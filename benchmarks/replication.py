"""Replication benchmark: the all-to-all DeltaManager measured against the issue's targets.

Run by hand, never by pytest (the whole suite takes about 20 minutes)::

    .venv/bin/python benchmarks/replication.py all
    .venv/bin/python benchmarks/replication.py overhead [--rounds 3] [--duration 10]
    .venv/bin/python benchmarks/replication.py latency [--rounds 3] [--requests 2000]
    .venv/bin/python benchmarks/replication.py lag | failover | lossless | transfer | memory
    .venv/bin/python benchmarks/replication.py profile [--mode sync]

Every member is a process of its own on 127.0.0.1: ``uvicorn apps:asgi_cluster``
where requests matter, a bare node driven over a pipe (``_worker``) where HTTP would
only add noise. Each subcommand prints its tables and the targets it can decide,
and merges its section into ``benchmarks/results/replication.json``. Every process
started is stopped by its pid, also on Ctrl-C or SIGTERM.
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

from _cluster import worker_main
from _harness import BENCH_DIR, build, environment, exit_on_sigterm, fmt_ms, fmt_us, print_table, run_script
from _replication_http import MODES, NOISE, OVERHEAD_VARIANTS, TOMCAT_ASYNC_LOST, failover, lossless, overhead
from _replication_latency import LATENCY_VARIANTS, latency, tuned
from _replication_nodes import lag, memory, profile, transfer

RESULTS_FILE = BENCH_DIR / "results" / "replication.json"

# The targets, from a real 3-node Tomcat 10.1 cluster on this kind of machine.
TOMCAT_CPU_PER_WRITE_US = {"async": 105.0, "sync": 150.0}
SYNC_ADDED_P50_MS = 0.5
TRANSFER_SESSIONS, TRANSFER_SECONDS = 100_000, 1.0  # Tomcat: 50,000 in 0.62 s


# -- every section -------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "overhead": overhead,
    "latency": latency,
    "lag": lag,
    "failover": failover,
    "lossless": lossless,
    "transfer": transfer,
    "memory": memory,
}


# -- targets and results ---------------------------------------------------------------------------


def targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: str, target: str, met: bool | None) -> None:
        checks.append({"target": name, "measured": value, "goal": target, "met": met})

    over = sections.get("overhead", {}).get("summary", {})
    for mode, tomcat in TOMCAT_CPU_PER_WRITE_US.items():
        s = over.get(f"3x-{mode}")
        if s and s.get("replication_cpu_per_write_s") is not None:
            value = s["replication_cpu_per_write_s"] * 1e6
            check(
                f"replication CPU per write, {mode}, summed over 3 members",
                f"{value:.0f} us",
                f"< {tomcat:.0f} us",
                value < tomcat,
            )
    # The interleaved measure when there is one: the single member and the cluster then share the noise.
    paired = sections.get("latency", {}).get("summary", {}).get("3x-sync")
    machine = tuned(sections.get("latency", {}).get("settings", {}))
    s = over.get("3x-sync")
    if paired:
        value = paired["added_p50_s"] * 1e3
        check(  # a run on a tuned machine is shown, never judged: the target's machine was not tuned
            "sync adds to a request at p50 (interleaved)" + (f", machine tuned: {machine}" if machine else ""),
            f"{value:.2f} ms",
            f"< {SYNC_ADDED_P50_MS} ms",
            None if machine else value < SYNC_ADDED_P50_MS,
        )
    elif s and s.get("added_latency_p50_s") is not None:
        value = s["added_latency_p50_s"] * 1e3
        check(
            "sync adds to a request at p50", f"{value:.2f} ms", f"< {SYNC_ADDED_P50_MS} ms", value < SYNC_ADDED_P50_MS
        )
    transfer_summary = sections.get("transfer", {}).get("summary", {})
    s = transfer_summary.get(str(TRANSFER_SESSIONS))
    if s:
        serving = s.get("served_during_transfer_ok")
        check(
            f"{TRANSFER_SESSIONS:,} sessions reach a joining member",
            f"{s['transfer_p50_s']:.2f} s",
            f"< {TRANSFER_SECONDS:g} s",
            s["transfer_p50_s"] < TRANSFER_SECONDS,
        )
        check(
            "the joining member serves requests during the transfer",
            str(s.get("served_during_transfer")),
            "every request 200",
            serving,
        )
    lost = sections.get("lossless", {}).get("summary", {})
    if "sync" in lost:
        check(
            "acknowledged writes lost, sync, SIGKILL of the writer",
            f"{lost['sync']['lost']} of {lost['sync']['writes']}",
            "0",
            lost["sync"]["lost"] == 0,
        )
    if "async" in lost:
        check(
            f"acknowledged writes lost, async (reported; Tomcat: {TOMCAT_ASYNC_LOST})",
            f"{lost['async']['lost']} of {lost['async']['writes']}",
            "report",
            None,
        )
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    if not checks:
        return
    verdict = {True: "MET", False: "NOT MET", None: "-"}
    print_table(
        "targets",
        ("target", "measured", "goal", "verdict"),
        [(c["target"], c["measured"], c["goal"], verdict[c["met"]]) for c in checks],
    )


def print_results(sections: dict[str, Any]) -> None:
    """The headline figures of every section present, one line each."""
    lines = []
    over = sections.get("overhead", {}).get("summary", {})
    for name, s in over.items():
        ratio = f"{s['vs_starlette']:.2f}x starlette's req/s" if s.get("vs_starlette") else ""
        repl = s.get("replication_cpu_per_write_s")
        lines.append(
            (
                f"overhead {name}",
                f"{s['requests_per_s']:,.0f} req/s on A, {ratio}; CPU {fmt_us(s['cpu_per_request_s'])} us/request"
                + (f" (replication {fmt_us(repl)} us/write)" if repl is not None else "")
                + f"; sequential p50 {fmt_ms(s['latency_p50_s'])} ms",
            )
        )
    for name, s in sections.get("latency", {}).get("summary", {}).items():
        added = "" if name == "single" else f", adds {fmt_ms(s['added_p50_s'])} ms at p50"
        lines.append((f"latency {name}", f"p50 {fmt_ms(s['p50_s'])} ms, p99 {fmt_ms(s['p99_s'])} ms{added}"))
    for mode, s in sections.get("lag", {}).get("summary", {}).items():
        lines.append(
            (
                f"lag {mode}",
                f"to B p50 {fmt_ms(s['b_p50_s'])} ms, p99 {fmt_ms(s['b_p99_s'])} ms; to B and C p50 "
                f"{fmt_ms(s['all_p50_s'])} ms, p99 {fmt_ms(s['all_p99_s'])} ms",
            )
        )
    s = sections.get("failover", {}).get("summary")
    if s:
        lines.append(
            (
                "failover",
                f"B serves A's session (re-routed) after {fmt_ms(s['served_p50_s'])} ms median; A dropped after "
                f"{fmt_ms(s['detected_p50_s'])} ms median, {fmt_ms(s['detected_max_s'])} ms max",
            )
        )
    for mode, s in sections.get("lossless", {}).get("summary", {}).items():
        lines.append((f"lost writes {mode}", f"{s['lost']} of {s['writes']}"))
    for size, s in sections.get("transfer", {}).get("summary", {}).items():
        lines.append(
            (
                f"transfer {int(size):,}",
                f"{s['transfer_p50_s']:.2f} s; requests meanwhile {s['served_during_transfer']} answered 200",
            )
        )
    for role, s in sections.get("memory", {}).get("summary", {}).items():
        lines.append((f"memory {role}", f"{s['traced_bytes']:,.0f} B/session traced, {s['rss_bytes']:,.0f} B RSS"))
    if lines:
        print_table("results", ("measure", "value"), lines, left=2)


def save(output: Path, name: str, section: dict[str, Any]) -> dict[str, Any]:
    """Merge one section into the JSON file (other sections from earlier runs are kept)."""
    report: dict[str, Any] = {"benchmark": "replication", "sections": {}}
    if output.exists():
        with contextlib.suppress(ValueError):
            report = json.loads(output.read_text())
    env = environment(None, ("replisession", "starlette", "uvicorn", "msgpack", "httptools"))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report.setdefault("sections", {})[name] = {"time": stamp, "environment": env, **section}
    report["environment"] = env
    report["note"] = NOISE
    report["targets"] = targets(report["sections"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="the JSON file sections are merged into")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("overhead", help="req/s vs starlette, CPU per request and per write, added latency")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds wrk measures each variant (10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--sequential", type=int, default=1000, help="sequential requests timed one by one (1000)")
    p.add_argument("--idle", type=float, default=1.0, help="seconds of idle CPU measured per variant (1)")
    p.add_argument("--variants", nargs="+", choices=OVERHEAD_VARIANTS)

    p = sub.add_parser("latency", help="what each send mode adds to a request, the variants interleaved")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=2000, help="sequential requests timed per variant and round")
    p.add_argument("--skip", type=int, default=200, help="first requests per variant not counted (warm-up)")
    p.add_argument("--variants", nargs="+", choices=LATENCY_VARIANTS, help="the single member is always included")
    p.add_argument("--pin", help="cores for each cluster's members A,B,C, e.g. -,0,1 (- leaves one free)")
    p.add_argument(
        "--halt-poll-ns",
        type=int,
        help="idle vCPUs poll this long before halting, during each round (root, KVM guest); restored after",
    )

    p = sub.add_parser("lag", help="write on A until visible on B, per send mode")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--writes", type=int, default=600)
    p.add_argument("--skip", type=int, default=50, help="first writes not counted (warm-up)")
    p.add_argument("--interval", type=float, default=0.005, help="seconds between writes (0.005)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))

    p = sub.add_parser("failover", help="SIGKILL of a member: its sessions served elsewhere, its removal")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--mode", choices=MODES, default="sync")

    p = sub.add_parser("lossless", help="acknowledged writes lost when the writer is SIGKILLed")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--writes", type=int, default=20)
    p.add_argument("--modes", nargs="+", choices=MODES, default=["sync", "async"])

    p = sub.add_parser("transfer", help="state transfer to a joining member that serves requests meanwhile")
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--rounds", type=int, default=2)

    p = sub.add_parser("memory", help="bytes per session on the primary and on a replica")
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=2)

    p = sub.add_parser("profile", help="cProfile of the replication path, sender and receiver, in one process")
    p.add_argument("--mode", choices=MODES, default="sync")
    p.add_argument("--writes", type=int, default=3000)
    p.add_argument("--top", type=int, default=18)
    p.add_argument("--interval", type=float, default=0.002, help="seconds between writes (0.002; 0: back to back)")
    p.add_argument("--transfer", type=int, default=0, help="also profile a state transfer of this many sessions")

    sub.add_parser("all", help="every measurement above with its defaults, then the summary")
    sub.add_parser("summary", help="print the summary of the results file, measuring nothing")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    if args.command == "profile":
        profile(args)
        return 0
    if args.command == "summary":
        sections = json.loads(args.output.read_text())["sections"]
        print_results(sections)
        print_targets(targets(sections))
        return 0
    names = list(SECTIONS) if args.command == "all" else [args.command]
    print(f"replisession: {build()}")
    report: dict[str, Any] = {}
    for name in names:
        section_args = parser.parse_args([name]) if args.command == "all" else args
        report = save(args.output, name, SECTIONS[name](section_args))
        if args.command != "all":
            print_targets(targets({name: report["sections"][name]}))
    if args.command == "all":
        print("\n== summary")
        print_results(report["sections"])
        print_targets(report["targets"])
    print(f"\nresults merged into {args.output}")
    return 0


if __name__ == "__main__":
    run_script(main)
