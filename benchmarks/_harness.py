"""What the benchmark scripts share: wrk, server processes on 127.0.0.1, /proc readings, tables.

Every process started here is started in a session of its own (so Ctrl-C reaches
only the benchmark, whose ``finally`` blocks stop it) and is stopped by its pid:
SIGTERM, then SIGKILL of its process group (gunicorn's workers too) on timeout.
Not a test module; run the scripts next to it by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.metadata
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from replisession.cli import demo_cluster

__all__ = [
    "BENCH_DIR",
    "HOST",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "WrkResult",
    "clean_env",
    "cpu_seconds",
    "ensure_wrk",
    "environment",
    "exit_on_sigterm",
    "fmt_ms",
    "fmt_us",
    "free_port",
    "http_request",
    "median",
    "parse_wrk",
    "percentile",
    "print_table",
    "rss_bytes",
    "run_script",
    "run_wrk",
    "running",
    "settings",
    "stop",
    "uvicorn_command",
    "wait_for_port",
]

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"  # loopback only
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


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


def run_wrk(wrk: str, port: int, cookie: str | None, connections: int, seconds: int, path: str = "/hit") -> WrkResult:
    headers = ["-H", f"Cookie: {cookie}"] if cookie else []
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", *headers, f"http://{HOST}:{port}{path}"]
    # subprocess.run kills wrk if it overruns or if we are interrupted.
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """A free port outside the kernel's range for outgoing connections: one drawn by bind(0)
    was once taken by a member's outgoing connection before the server bound it (a variant
    then answered 404 from someone else's server)."""
    return demo_cluster.free_port(HOST)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any REPLISESSION_* variable, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REPLISESSION_")}
    env.update(extra)
    return env


def uvicorn_command(factory: str, port: int) -> list[str]:
    """One uvicorn process (no worker processes) serving ``apps:<factory>`` on 127.0.0.1."""
    return [
        *(sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH_DIR), f"apps:{factory}"),
        *("--host", HOST, "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"),
    ]


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise RuntimeError(f"server did not answer on {HOST}:{port} within {timeout:g}s")


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a process by its pid; kill its process group (gunicorn's worker too) on timeout."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group is the one start_new_session made
            process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def running(
    command: Sequence[str], port: int, *, env: Mapping[str, str] | None = None, label: str = "server"
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``port`` answers, yield the process, stop it by its pid.

    Its output goes to a temporary log that is attached to any exception raised inside.
    """
    with tempfile.TemporaryDirectory(prefix="replisession-bench-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as log_file:
            # A session of its own: Ctrl-C reaches only us, and the finally below stops the server.
            process = subprocess.Popen(
                list(command),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
            try:
                wait_for_port(process, port, log)
                yield process
            except Exception as exc:
                exc.add_note(f"{label} log:\n{log.read_text(errors='replace')[-4000:]}")
                raise
            finally:
                stop(process)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every process started is stopped by the finally blocks."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_script(main: Callable[[], int], interrupted: str = "every process started was stopped") -> NoReturn:
    """A benchmark script's entry point: its exit status, or 130 with a word on Ctrl-C."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)


def http_request(
    port: int, method: str, path: str, cookie: str | None = None, timeout: float = 15.0
) -> tuple[int, str, str | None]:
    """One request on a fresh connection: status, body and the ``name=value`` of any Set-Cookie."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        body = response.read().decode()
        set_cookie = response.getheader("set-cookie")
        return response.status, body, set_cookie.split(";", 1)[0] if set_cookie else None
    finally:
        connection.close()


# -- /proc ---------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- numbers and tables ----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """A plain-text table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print(f"\n{title}")
    for row in (header, tuple("-" * w for w in widths), *rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(cells)))


def fmt_us(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1e6:,.0f}"


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def settings(args: Any) -> dict[str, Any]:
    """An argparse namespace as JSON-ready settings."""
    return {key: value for key, value in vars(args).items() if not callable(value)}


def build() -> str:
    """Which replisession the benchmark's processes import from src/: with the modules that
    ``./scripts/compile`` (and ``pip install``) compile, or pure Python."""
    import replisession.node.member

    return "pure Python" if replisession.node.member.__file__.endswith(".py") else "compiled (scripts/compile)"


def environment(wrk: str | None, packages: Sequence[str]) -> dict[str, Any]:
    """Commit, build, versions and machine, for the JSON results."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    wrk_version = None
    if wrk is not None:
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (done.stdout or done.stderr).split("[")[0].strip()
    git = ["git", "-C", str(BENCH_DIR)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    src_changes = subprocess.run(
        [*git, "status", "--porcelain", "--", "../src"], capture_output=True, text=True, check=False
    )
    src_diff = subprocess.run([*git, "diff", "HEAD", "--", "../src"], capture_output=True, check=False).stdout
    return {
        "commit": commit.stdout.strip() or None,
        "src_uncommitted_changes": bool(src_changes.stdout.strip()),
        # Which uncommitted state of src/ was measured, when there is one.
        "src_diff_sha256": hashlib.sha256(src_diff).hexdigest() if src_diff else None,
        "build": build(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "wrk": wrk_version,
        "packages": {name: version(name) for name in packages},
    }
