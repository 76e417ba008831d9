"""The replication benchmark's ``latency`` section: what each send mode adds to a request.

Every variant (a single member, and three members in each send mode) is up at the same
time, each on a keep-alive connection of its own, and sequential ``GET /hit`` requests go
to them in turn: one to each variant, in a rotated order, then the next. The variants thus
share the machine's noise request by request, where ``overhead`` times them minutes apart.
Each round starts fresh processes: which core the kernel gives each member is sticky within
a run and differs between runs (see benchmarks/README.md), so rounds sample it.

Used by ``replication.py``; see its docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from _harness import HOST, fmt_ms, http_request, median, percentile, print_table, settings
from _replication_http import NOISE, OVERHEAD_LABELS, serve_variant

__all__ = ["LATENCY_VARIANTS", "latency", "tuned"]

LATENCY_VARIANTS = ("single", "3x-async", "3x-ack", "3x-sync")
# The guest's cpuidle driver on a KVM VM: how long an idle vCPU polls before it halts.
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def tuned(settings: dict[str, Any]) -> str | None:
    """How a run's machine differed from its defaults (pinned cores, halt polling), or None."""
    changes = []
    if settings.get("pin"):
        changes.append(f"--pin {settings['pin']}")
    if settings.get("halt_poll_ns") is not None:
        changes.append(f"--halt-poll-ns {settings['halt_poll_ns']}")
    return ", ".join(changes) or None


@contextlib.contextmanager
def halt_polling(ns: int | None) -> Iterator[None]:
    """Idle vCPUs poll ``ns`` nanoseconds before halting, for the duration; then as before.
    A halted vCPU is woken through the host (an IPI and a VM entry); a polling one is not."""
    if ns is None:
        yield
        return
    try:
        before = HALT_POLL.read_text().strip()
        HALT_POLL.write_text(str(ns))
    except OSError as exc:
        raise SystemExit(f"--halt-poll-ns needs root and the haltpoll cpuidle driver (a KVM guest): {exc}") from exc
    try:
        yield
    finally:
        HALT_POLL.write_text(before)


def interleaved(ports: dict[str, tuple[int, str | None]], requests: int, skip: int) -> dict[str, list[float]]:
    """Seconds per ``GET /hit`` for each variant, requests sent to the variants in turn."""
    names = list(ports)
    connections = {name: http.client.HTTPConnection(HOST, port, timeout=15) for name, (port, _) in ports.items()}
    headers = {name: {"Cookie": cookie} if cookie else {} for name, (_, cookie) in ports.items()}
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for index in range(skip + requests):
            shift = index % len(names)  # no variant always follows the same one
            for name in names[shift:] + names[:shift]:
                connection = connections[name]
                start = time.perf_counter()
                connection.request("GET", "/hit", headers=headers[name])
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200:
                    raise RuntimeError(f"{name}: GET /hit answered {response.status}")
                if index >= skip:
                    times[name].append(elapsed)
    finally:
        for connection in connections.values():
            connection.close()
    return times


def measure_round(names: list[str], requests: int, skip: int, pin: Sequence[str] | None) -> dict[str, dict[str, float]]:
    with contextlib.ExitStack() as stack:
        ports: dict[str, tuple[int, str | None]] = {}
        for name in names:
            port, pids, _ = stack.enter_context(serve_variant(name))
            if pin and name != "single":
                for pid, cpu in zip(pids, pin, strict=False):
                    if cpu != "-":
                        os.sched_setaffinity(pid, {int(cpu)})
            status, _, cookie = http_request(port, "GET", "/hit")
            if status != 200 or cookie is None:
                raise RuntimeError(f"{name}: priming answered {status} with cookie {cookie!r}")
            ports[name] = (port, cookie)
        times = interleaved(ports, requests, skip)
    return {name: {"p50_s": percentile(t, 50), "p99_s": percentile(t, 99)} for name, t in times.items()}


def latency(args: argparse.Namespace) -> dict[str, Any]:
    names = list(args.variants or LATENCY_VARIANTS)
    if "single" not in names:
        names.insert(0, "single")
    print(
        f"\n== latency: {', '.join(names)} up together; {args.requests} sequential GET /hit each, "
        f"sent to the variants in turn (after {args.skip} not counted); {args.rounds} rounds, fresh processes each"
        + (f"; cluster members pinned to cores {args.pin} (A,B,C; - not pinned)" if args.pin else "")
        + (f"; idle vCPUs poll {args.halt_poll_ns} ns before halting" if args.halt_poll_ns is not None else ""),
        flush=True,
    )
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        with halt_polling(args.halt_poll_ns):
            measured = measure_round(names, args.requests, args.skip, args.pin.split(",") if args.pin else None)
        for name in names:
            sample = measured[name]
            sample["added_p50_s"] = sample["p50_s"] - measured["single"]["p50_s"]
            samples[name].append(sample)
            print(
                f"  round {round_index + 1} {name:9s} p50 {fmt_ms(sample['p50_s'])} ms  "
                f"p99 {fmt_ms(sample['p99_s'])} ms  added p50 {fmt_ms(sample['added_p50_s'])} ms",
                flush=True,
            )
    summary = {
        name: {key: median([s[key] for s in runs]) for key in ("p50_s", "p99_s", "added_p50_s")}
        for name, runs in samples.items()
    }
    if "3x-sync" in summary and "3x-async" in summary:
        waits = [s["p50_s"] - a["p50_s"] for s, a in zip(samples["3x-sync"], samples["3x-async"], strict=True)]
        summary["3x-sync"]["over_async_p50_s"] = median(waits)
    rows = [
        (
            OVERHEAD_LABELS[name],
            fmt_ms(s["p50_s"]),
            fmt_ms(s["p99_s"]),
            "-" if name == "single" else fmt_ms(s["added_p50_s"]),
            fmt_ms(s["over_async_p50_s"]) if "over_async_p50_s" in s else "-",
        )
        for name, s in summary.items()
    ]
    print_table(
        f"latency (median of {args.rounds} rounds)",
        ("variant", "p50 ms", "p99 ms", "added p50 ms", "sync over async p50 ms"),
        rows,
    )
    print(
        "\nadded: the variant's p50 minus the single member's, in the same round. The client is Python's "
        "http.client, in this process; its own time is in every variant's figures alike.\n" + NOISE
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}
