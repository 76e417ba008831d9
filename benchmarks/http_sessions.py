"""HTTP benchmark: one request that reads and writes one session attribute, five back ends.

Run by hand, never by pytest::

    .venv/bin/python benchmarks/http_sessions.py [--duration 10] [--connections 2] [--rounds 1]

Each variant of ``benchmarks/apps.py`` is served by its own server process on
127.0.0.1 (uvicorn, one worker, for the ASGI apps; gunicorn, one sync worker,
for the Flask apps) and driven by wrk with the cookie of a session primed
beforehand, so every measured request loads, changes and stores an existing
session. Prints requests/s and ratios, says whether the targets hold and
writes ``benchmarks/results/http_sessions.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "http_sessions.json"
HOST = "127.0.0.1"  # loopback only
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

COOKIE_NOTE = (
    "Cookie sessions (starlette, flask) send a new cookie on every response; wrk resends the first one, "
    "which stays valid (a signed payload within max_age), so each request still decodes, changes and "
    "re-signs a whole session."
)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    label: str
    server: str  # "uvicorn" or "gunicorn"
    factory: str  # a factory in apps.py
    server_side: bool  # the session lives on the server, so the counter keeps growing


VARIANTS = (
    Variant("asgi_plain", "starlette, no session middleware", "uvicorn", "asgi_plain", False),
    Variant("asgi_starlette", "starlette SessionMiddleware (cookie)", "uvicorn", "asgi_starlette", False),
    Variant("asgi_replisession", "replisession SessionMiddleware", "uvicorn", "asgi_replisession", True),
    Variant("flask_cookie", "flask default session (cookie)", "gunicorn", "flask_cookie", False),
    Variant("flask_replisession", "flask + replisession ReplicatedSession", "gunicorn", "flask_replisession", True),
)
BASELINE = "asgi_plain"
FLASK_BASELINE = "flask_cookie"
TARGETS = (("asgi_replisession", "asgi_starlette"), ("flask_replisession", "flask_cookie"))


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    requests: int
    latency_avg_us: float | None
    errors: int  # socket errors plus non-2xx/3xx responses


# -- wrk ---------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install; install it by hand")
    return found


_LATENCY = re.compile(r"^\s*Latency\s+([\d.]+)(us|ms|s)\b", re.MULTILINE)
_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk's output:\n{output}")
    latency = _LATENCY.search(output)
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        latency_avg_us=float(latency.group(1)) * _UNITS_US[latency.group(2)] if latency else None,
        errors=errors,
    )


def run_wrk(wrk: str, port: int, cookie: str | None, connections: int, seconds: int) -> WrkResult:
    headers = ["-H", f"Cookie: {cookie}"] if cookie else []
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", *headers, f"http://{HOST}:{port}/hit"]
    # subprocess.run kills wrk if it overruns or if we are interrupted.
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command(variant: Variant, port: int) -> list[str]:
    if variant.server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH_DIR), f"apps:{variant.factory}"),
            *("--host", HOST, "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"),
        ]
    return [
        *(sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"{HOST}:{port}"),
        *("--chdir", str(BENCH_DIR), "--log-level", "warning", "--graceful-timeout", "5"),
        f"apps:{variant.factory}()",
    ]


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise RuntimeError(f"server did not answer on {HOST}:{port} within {START_TIMEOUT:g}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server by its pid; kill its process group (gunicorn's worker too) on timeout."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group is the one start_new_session made
            process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def serve(variant: Variant, port: int) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="replisession-bench-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as log_file:
            # A session of its own: Ctrl-C reaches only us, and the finally below stops the server.
            process = subprocess.Popen(
                server_command(variant, port), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                wait_for_port(process, port, log)
                yield
            except Exception as exc:
                exc.add_note(f"{variant.server} log:\n{log.read_text(errors='replace')}")
                raise
            finally:
                stop(process)


def get_hit(port: int, cookie: str | None = None) -> tuple[str, str | None]:
    """GET /hit: the body and the ``name=value`` of the response's Set-Cookie, if any."""
    connection = http.client.HTTPConnection(HOST, port, timeout=15)
    try:
        connection.request("GET", "/hit", headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"GET /hit answered {response.status}: {body!r}")
        set_cookie = response.getheader("set-cookie")
        return body, set_cookie.split(";", 1)[0] if set_cookie else None
    finally:
        connection.close()


# -- one run -----------------------------------------------------------------------------


def measure(wrk: str, variant: Variant, connections: int, duration: int, warmup: int) -> dict[str, Any]:
    port = free_port()
    with serve(variant, port):
        body, cookie = get_hit(port)
        if variant.name != BASELINE:
            if cookie is None or body != "1":
                raise RuntimeError(f"{variant.name}: priming gave body {body!r} and cookie {cookie!r}")
        if warmup > 0:
            run_wrk(wrk, port, cookie, connections, warmup)
        result = run_wrk(wrk, port, cookie, connections, duration)
        # A server-side session counts every request; a cookie session restarts from the
        # primed cookie's value each time. Either way, this shows the session was reused.
        after, _ = get_hit(port, cookie)
    session_ok: bool | None = None  # the baseline has no session
    if variant.name != BASELINE:
        session_ok = int(after) > result.requests if variant.server_side else after == "2"
    return {**asdict(result), "port": port, "session_n_after": int(after), "session_reused": session_ok}


def environment(wrk: str) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    git = ["git", "-C", str(BENCH_DIR)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    src_changes = subprocess.run(
        [*git, "status", "--porcelain", "--", "../src"], capture_output=True, text=True, check=False
    )
    return {
        "commit": commit.stdout.strip() or None,
        "src_uncommitted_changes": bool(src_changes.stdout.strip()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).split("[")[0].strip(),
        "packages": {
            name: version(name)
            for name in ("replisession", "starlette", "uvicorn", "flask", "werkzeug", "gunicorn", "httptools", "uvloop")
        },
    }


# -- report ------------------------------------------------------------------------------


def summarise(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    medians = {name: statistics.median(s["requests_per_s"] for s in runs) for name, runs in samples.items()}
    summary: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        if variant.name not in medians:
            continue
        rps = medians[variant.name]
        runs = samples[variant.name]
        summary[variant.name] = {
            "label": variant.label,
            "server": variant.server,
            "requests_per_s": rps,
            "samples": [s["requests_per_s"] for s in runs],
            "vs_baseline": rps / medians[BASELINE] if BASELINE in medians else None,
            "vs_flask_cookie": (
                rps / medians[FLASK_BASELINE] if variant.server == "gunicorn" and FLASK_BASELINE in medians else None
            ),
            "errors": sum(s["errors"] for s in runs),
            "session_reused": None if variant.name == BASELINE else all(s["session_reused"] for s in runs),
        }
    return summary


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for ours, theirs in TARGETS:
        if ours in summary and theirs in summary:
            a, b = summary[ours]["requests_per_s"], summary[theirs]["requests_per_s"]
            checks.append({"variant": ours, "against": theirs, "ratio": a / b, "holds": a >= b})
    return checks


def print_table(summary: dict[str, dict[str, Any]], checks: list[dict[str, Any]], rounds: int) -> None:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    header = ("variant", "server", "req/s", "vs no-mw", "vs flask cookie", "errors", "session reused")
    rows = [
        (
            s["label"],
            s["server"],
            f"{s['requests_per_s']:,.0f}",
            ratio(s["vs_baseline"]),
            ratio(s["vs_flask_cookie"]),
            str(s["errors"]),
            {None: "-", True: "yes", False: "NO"}[s["session_reused"]],
        )
        for s in summary.values()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print()
    for row in (header, tuple("-" * w for w in widths), *rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
    if rounds > 1:
        print(f"\nreq/s is the median of {rounds} rounds; every sample is in the JSON file.")
    print(f"\nNote: {COOKIE_NOTE}")
    for check in checks:
        verdict = "HOLDS" if check["holds"] else "MISSED"
        print(f"target {check['variant']} >= {check['against']}: {verdict} (ratio {check['ratio']:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds wrk measures each variant (10)")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections (2)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first (2)")
    parser.add_argument("--rounds", type=int, default=1, help="run every variant this many times, interleaved (1)")
    parser.add_argument(
        "--variants", nargs="+", choices=[v.name for v in VARIANTS], help="run only these (default: all)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="where to write the JSON results")
    args = parser.parse_args(argv)
    for module in ("uvicorn", "gunicorn", "flask", "starlette", "replisession"):
        if importlib.util.find_spec(module) is None:
            parser.error(f"{module} is not importable by {sys.executable}: run this with the project's .venv python")
    # SIGTERM unwinds like Ctrl-C, so every server is stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    wrk = ensure_wrk()
    chosen = [v for v in VARIANTS if not args.variants or v.name in args.variants]
    samples: dict[str, list[dict[str, Any]]] = {v.name: [] for v in chosen}
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s (after {args.warmup}s warm-up), "
        f"{len(chosen)} variants x {args.rounds} round(s), servers on {HOST}",
        flush=True,
    )
    for round_index in range(args.rounds):
        for variant in chosen:
            sample = measure(wrk, variant, args.connections, args.duration, args.warmup)
            samples[variant.name].append(sample)
            print(
                f"  round {round_index + 1} {variant.name:<20} {sample['requests_per_s']:>10,.0f} req/s"
                f"  errors {sample['errors']}  session n after {sample['session_n_after']}",
                flush=True,
            )

    summary = summarise(samples)
    checks = targets(summary)
    print_table(summary, checks, args.rounds)
    report = {
        "benchmark": "http_sessions",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "wrk_threads": 1,
        },
        "environment": environment(wrk),
        "note": COOKIE_NOTE,
        "summary": summary,
        "targets": checks,
        "samples": samples,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every server started was stopped; no results written", file=sys.stderr)
        sys.exit(130)
