"""Who runs, and who waits for a core, while sequential requests go to member A.

Run by hand, never by pytest (as root: the kernel's scheduler events need it)::

    .venv/bin/python benchmarks/sched_timeline.py [--variant 3x-sync] [--seconds 2]

Starts the variant's uvicorn members (``replication.py``'s variants) on 127.0.0.1, sends
them sequential ``GET /hit`` requests from this process, and records the kernel's
scheduler events meanwhile with ``perf sched record`` (Debian's ``linux-perf``, installed
if missing). ``perf sched timehist`` then gives every stretch a task ran on a core and how
long it had waited for one after being woken; per request, this prints each process's
run time, its wait for a core ("scheduling delay"), how often it was switched in, and on
which core it ran. It shows what the CPU figures cannot: whether a replica waited for a
core while the other was idle. Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

from _harness import HOST, http_request, print_table, run_script, stop
from _replication_http import OVERHEAD_VARIANTS, serve_variant


def ensure_perf() -> str:
    found = shutil.which("perf")
    if found:
        return found
    print("perf not found: installing linux-perf with apt-get", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "linux-perf"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "linux-perf"], check=True)
    found = shutil.which("perf")
    if not found:
        raise SystemExit("perf is still missing after apt-get install; install linux-perf by hand")
    return found


def requests_for(port: int, cookie: str | None, seconds: float) -> list[tuple[float, float]]:
    """Sequential ``GET /hit`` on one keep-alive connection for ``seconds``: when each began and ended
    (``time.monotonic``, the clock perf is told to stamp its events with)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=15)
    headers = {"Cookie": cookie} if cookie else {}
    times: list[tuple[float, float]] = []
    end = time.monotonic() + seconds
    try:
        while (start := time.monotonic()) < end:
            connection.request("GET", "/hit", headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /hit answered {response.status}")
            times.append((start, time.monotonic()))
    finally:
        connection.close()
    return times


SWITCH = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:.* prev_pid=(\d+) .*prev_state=(\S+) ==> .* next_pid=(\d+) "
)
WAKING = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_waking:.* pid=(\d+) ")


class Tally:
    def __init__(self) -> None:
        self.run = 0.0  # seconds on a core
        self.waited = 0.0  # seconds from being woken to running
        self.waited_idle = 0.0  # of which another core was idle
        self.switches = 0
        self.by_cpu: collections.Counter[int] = collections.Counter()


def overlap(intervals: list[tuple[float, float]], starts: list[float], begin: float, end: float) -> float:
    """Seconds of [begin, end] covered by ``intervals`` (sorted, disjoint; ``starts`` their starts)."""
    total = 0.0
    for lo, hi in intervals[max(0, bisect.bisect_right(starts, begin) - 1) :]:
        if lo >= end:
            break
        total += max(0.0, min(hi, end) - max(lo, begin))
    return total


def running(current: dict[int, tuple[int, float]]) -> set[int]:
    return {pid for pid, _ in current.values()}


def events(perf: str, data: Path) -> list[str]:
    done = subprocess.run([perf, "script", "-i", str(data)], capture_output=True, text=True, check=True)
    if "lost" in done.stderr.lower():
        print(done.stderr.strip(), file=sys.stderr)
    return done.stdout.splitlines()


def first_and_last(lines: list[str]) -> tuple[float, float]:
    """When the recording's first and last events happened."""
    stamps = [float(m[2]) for line in lines if (m := SWITCH.search(line) or WAKING.search(line))]
    return min(stamps), max(stamps)


def tally(lines: list[str], names: dict[int, str], lo: float, hi: float) -> dict[str, Tally]:
    """Per named process (others: "other"; a core's idle task: "idle"), between ``lo`` and ``hi``."""
    tallies: dict[str, Tally] = collections.defaultdict(Tally)
    current: dict[int, tuple[int, float]] = {}  # cpu -> (pid, since)
    woken: dict[int, float] = {}
    waits: list[tuple[str, int, float, float]] = []  # (name, cpu it ran on, woken, ran)
    idle: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for line in lines:
        if m := SWITCH.search(line):
            cpu, t, prev, state, nxt = int(m[1]), float(m[2]), int(m[3]), m[4], int(m[5])
            if prev and state.startswith("R"):
                woken[prev] = t  # preempted: runnable, waiting for a core from now
            if cpu in current:
                pid, since = current[cpu]
                name = "idle" if pid == 0 else names.get(pid, "other")
                ran = max(0.0, min(t, hi) - max(since, lo))
                tallies[name].run += ran
                tallies[name].by_cpu[cpu] += ran
                if pid == 0:
                    idle[cpu].append((since, t))
            current[cpu] = (nxt, t)
            name = "idle" if nxt == 0 else names.get(nxt, "other")
            tallies[name].switches += lo <= t <= hi
            if nxt in woken and lo <= (began := woken.pop(nxt)) <= hi:
                waits.append((name, cpu, began, t))
        elif (m := WAKING.search(line)) and int(m[3]) not in running(current):
            woken.setdefault(int(m[3]), float(m[2]))
    starts = {cpu: [lo for lo, _ in spans] for cpu, spans in idle.items()}
    for name, ran_on, begin, end in waits:
        t = tallies[name]
        t.waited += end - begin
        t.waited_idle += max(
            (overlap(spans, starts[cpu], begin, end) for cpu, spans in idle.items() if cpu != ran_on), default=0.0
        )
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=[v for v in OVERHEAD_VARIANTS if v not in ("plain", "starlette")])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of requests recorded (2)")
    args = parser.parse_args(argv)
    variant = args.variant or "3x-sync"
    perf = ensure_perf()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sched-timeline-") as folder:
        port, pids, _ = stack.enter_context(serve_variant(variant))
        _, _, cookie = http_request(port, "GET", "/hit")
        requests_for(port, cookie, 1.0)  # warm-up
        data = Path(folder) / "sched.data"
        record = [perf, "sched", "record", "-k", "CLOCK_MONOTONIC", "-m", "4096", "-o", str(data)]
        recorder = subprocess.Popen(
            [*record, "--", "sleep", str(args.seconds + 1.0)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            times = requests_for(port, cookie, args.seconds + 1.0)  # only those inside the recording count
            recorder.wait(timeout=30)
        finally:
            stop(recorder)
        lines = events(perf, data)
        first, last = first_and_last(lines)
        inside = [(start, end) for start, end in times if first <= start and end <= last]
        if not inside:
            raise SystemExit("no request fell inside the recording")
        lo, hi, count = inside[0][0], inside[-1][1], len(inside)
        names = {os.getpid(): "client (this process)", **dict(zip(pids, ("A", "B", "C"), strict=False))}
        tallies = tally(lines, names, lo, hi)
    cpus = sorted({cpu for t in tallies.values() for cpu in t.by_cpu})
    order = sorted(tallies, key=lambda n: (n in ("other", "idle"), n))
    cpu_columns = [f"% on cpu {c}" for c in cpus]
    rows = []
    for name in order:
        t = tallies[name]
        shares = [f"{100 * t.by_cpu[cpu] / max(sum(t.by_cpu.values()), 1e-12):.0f}" for cpu in cpus]
        waited = (
            ("-", "-") if name == "idle" else (f"{t.waited / count * 1e6:.0f}", f"{t.waited_idle / count * 1e6:.0f}")
        )
        rows.append((name, f"{t.run / count * 1e6:.0f}", *waited, f"{t.switches / count:.2f}", *shares))
    print_table(
        f"{variant}: {count} sequential requests recorded ({hi - lo:.2f} s), per request",
        ("process", "run us", "waited for a core us", "of which a core idled us", "switched in", *cpu_columns),
        rows,
    )
    return 0


if __name__ == "__main__":
    run_script(main)
