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
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

from _harness import (
    BENCH_DIR,
    HOST,
    ensure_wrk,
    exit_on_sigterm,
    free_port,
    http_request,
    run_script,
    run_wrk,
    running,
    uvicorn_command,
)
from _harness import environment as _environment

RESULTS_FILE = BENCH_DIR / "results" / "http_sessions.json"

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


# -- servers -----------------------------------------------------------------------------


def server_command(variant: Variant, port: int) -> list[str]:
    if variant.server == "uvicorn":
        return uvicorn_command(variant.factory, port)
    return [
        *(sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"{HOST}:{port}"),
        *("--chdir", str(BENCH_DIR), "--log-level", "warning", "--graceful-timeout", "5"),
        f"apps:{variant.factory}()",
    ]


@contextlib.contextmanager
def serve(variant: Variant, port: int) -> Iterator[None]:
    with running(server_command(variant, port), port, label=variant.server):
        yield


def get_hit(port: int, cookie: str | None = None) -> tuple[str, str | None]:
    """GET /hit: the body and the ``name=value`` of the response's Set-Cookie, if any."""
    status, body, set_cookie = http_request(port, "GET", "/hit", cookie)
    if status != 200:
        raise RuntimeError(f"GET /hit answered {status}: {body!r}")
    return body, set_cookie


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
    return _environment(
        wrk, ("replisession", "starlette", "uvicorn", "flask", "werkzeug", "gunicorn", "httptools", "uvloop")
    )


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
    exit_on_sigterm()  # SIGTERM unwinds like Ctrl-C, so every server is stopped by the finally blocks

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
    run_script(main, "every server started was stopped; no results written")
