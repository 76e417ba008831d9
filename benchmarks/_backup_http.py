"""``backup.py throughput``: three uvicorn members, wrk on member A, one manager against the other.

Each variant is three ``apps:asgi_cluster`` processes that differ only in
``REPLISESSION_MANAGER`` (and ``REPLISESSION_BACKUPS``); the variants alternate within
every round, so both see the same neighbours on the shared machine. Measured as
``replication.py overhead`` measures its 3-member variants: a primed cookie (every
request writes one attribute on its primary, A), wrk ``-t1 -c2`` after a warm-up, and
the CPU of every member from ``/proc`` around the wrk run, less its idle rate, per
request. Then each member's session count (the BackupManager: 1 + k copies), and A is
SIGKILLed and B asked for the session, which must have A's last write (sync mode).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from _harness import ensure_wrk, fmt_us, http_request, median, print_table, run_wrk, settings
from _replication_http import NOISE, cpu_of, read_session, start_cluster

__all__ = ["THROUGHPUT_VARIANTS", "throughput"]

THROUGHPUT_VARIANTS: dict[str, dict[str, str]] = {
    "delta": {"REPLISESSION_MANAGER": "delta"},
    "backup k=1": {"REPLISESSION_MANAGER": "backup", "REPLISESSION_BACKUPS": "1"},
}


def measure(wrk: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    env = THROUGHPUT_VARIANTS[name]
    with contextlib.ExitStack() as stack:
        members = start_cluster(stack, args.mode, 3, env)
        a, b, _ = members
        pids = [m.pid for m in members]
        status, _, cookie = http_request(a.http_port, "GET", "/hit")
        if status != 200 or cookie is None:
            raise RuntimeError(f"{name}: priming answered {status} with cookie {cookie!r}")
        # Heartbeats and timers cost a little even when idle: measured, then subtracted.
        idle_start, before = time.monotonic(), cpu_of(pids)
        time.sleep(args.idle)  # a measured idle interval, not a wait for anything
        idle_rates = [(x - y) / (time.monotonic() - idle_start) for x, y in zip(cpu_of(pids), before, strict=True)]

        run_wrk(wrk, a.http_port, cookie, args.connections, args.warmup)
        before, started = cpu_of(pids), time.monotonic()
        result = run_wrk(wrk, a.http_port, cookie, args.connections, args.duration)
        elapsed, after = time.monotonic() - started, cpu_of(pids)
        cpu = [(x - y - r * elapsed) / result.requests for x, y, r in zip(after, before, idle_rates, strict=True)]

        counts = [m.cluster()["sessions"] for m in members]
        _, last, _ = http_request(a.http_port, "GET", "/hit", cookie)  # A's counter, one more write
        a.kill()
        survived = read_session(b, cookie)
    return {
        "requests_per_s": result.requests_per_s,
        "requests": result.requests,
        "errors": result.errors,
        "cpu_per_request_s": sum(cpu),
        "cpu_per_request_by_member_s": cpu,
        "idle_cpu_rates": idle_rates,
        "copies": sum(counts),
        "copies_by_member": counts,
        "survives_sigkill": survived is not None and survived.get("n") == int(last),
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_wrk()
    print(
        f"\n== throughput: 3 members ({args.mode}), wrk -t1 -c{args.connections} -d{args.duration}s on A (after "
        f"{args.warmup}s warm-up), {', '.join(THROUGHPUT_VARIANTS)}; {args.rounds} rounds, interleaved",
        flush=True,
    )
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in THROUGHPUT_VARIANTS}
    for round_index in range(args.rounds):
        for name in THROUGHPUT_VARIANTS:
            sample = measure(wrk, name, args)
            samples[name].append(sample)
            print(
                f"  round {round_index + 1} {name:<10} {sample['requests_per_s']:>7,.0f} req/s  cpu/req "
                f"{fmt_us(sample['cpu_per_request_s'])} us ("
                + " + ".join(fmt_us(c) for c in sample["cpu_per_request_by_member_s"])
                + f")  errors {sample['errors']}  copies {sample['copies_by_member']}  "
                f"B has A's last write after SIGKILL of A: {sample['survives_sigkill']}",
                flush=True,
            )
    summary = {}
    for name, runs in samples.items():
        summary[name] = {
            "requests_per_s": median([r["requests_per_s"] for r in runs]),
            "cpu_per_request_s": median([r["cpu_per_request_s"] for r in runs]),
            "cpu_per_request_by_member_s": [
                median([r["cpu_per_request_by_member_s"][i] for r in runs]) for i in range(3)
            ],
            "errors": sum(r["errors"] for r in runs),
            "copies": sorted({r["copies"] for r in runs}),
            "survives_sigkill": all(r["survives_sigkill"] for r in runs),
        }
    base = summary["delta"]
    rows = []
    for name, s in summary.items():
        rows.append(
            (
                name,
                f"{s['requests_per_s']:,.0f}",
                f"{s['requests_per_s'] / base['requests_per_s']:.2f}",
                fmt_us(s["cpu_per_request_s"]),
                " / ".join(fmt_us(c) for c in s["cpu_per_request_by_member_s"]),
                str(s["errors"]),
                "/".join(str(c) for c in s["copies"]),
                "yes" if s["survives_sigkill"] else "NO",
            )
        )
    print_table(
        f"3 members, {args.mode}, wrk on A (median of {args.rounds})",
        ("manager", "req/s on A", "vs delta", "cpu/req us", "A / B / C us", "errors", "copies", "survives SIGKILL"),
        rows,
    )
    print(
        "\ncpu/req: user+system CPU of the three members during the wrk run, less their idle rate, per request "
        "(A / B / C: each member's share). copies: the members' session counts summed after the run (one "
        "session: 1 + k copies with the BackupManager, 3 with the DeltaManager). "
        "survives SIGKILL: after the run A was killed and B served the session with A's last write.\n" + NOISE
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}
