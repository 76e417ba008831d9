"""The replication benchmark's sections that drive uvicorn members over HTTP.

* ``overhead``: wrk against member A of each variant (Starlette's cookie sessions, a
  single member, three members in each send mode): requests/s, CPU per request summed
  over the variant's processes (from /proc), and sequential request latency.
* ``failover``: SIGKILL of the member that served a session; how soon another one
  serves it in full with a re-routed cookie, and how soon the others drop the member.
* ``lossless``: acknowledged writes through A, SIGKILL of A, what B still has.

Used by ``replication.py``; see its docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from _cluster import HttpMember, wait_for_members, wait_until
from _harness import (
    HOST,
    clean_env,
    cpu_seconds,
    ensure_wrk,
    fmt_ms,
    fmt_us,
    free_port,
    http_request,
    median,
    percentile,
    print_table,
    run_wrk,
    running,
    settings,
    uvicorn_command,
)

__all__ = [
    "MODES",
    "NOISE",
    "OVERHEAD_LABELS",
    "OVERHEAD_VARIANTS",
    "TOMCAT_ASYNC_LOST",
    "failover",
    "lossless",
    "overhead",
    "serve_variant",
]

MODES = ("async", "ack", "sync")
ROUTES = ("node1", "node2", "node3")
TOMCAT_ASYNC_LOST = "7 of 400"
NOISE = (
    "Other test suites share this 2-core machine: every figure is the median of at least two "
    "runs (each sample is in the JSON file); CPU time per process is steadier than req/s."
)


# -- shared --------------------------------------------------------------------------------


def start_cluster(
    stack: contextlib.ExitStack, mode: str, size: int = 3, env: Mapping[str, str] | None = None
) -> list[HttpMember]:
    """``size`` uvicorn members that all list each other; stopped when ``stack`` closes.
    ``env``: more ``REPLISESSION_*`` settings for every member."""
    ports = [free_port() for _ in range(size)]
    members = []
    for route, port in zip(ROUTES[:size], ports, strict=True):
        member = HttpMember(route, cluster_ports=ports, peer_port=port, mode=mode, env=env)
        stack.callback(member.stop)
        members.append(member)
    for member in members:
        member.wait_serving()
    wait_for_members(members)
    return members


def restart(stack: contextlib.ExitStack, members: list[HttpMember], index: int, mode: str) -> HttpMember:
    """A new process for ``members[index]`` (same route, new ports); waits until all list it."""
    members[index].stop()
    port = free_port()
    ports = [m.peer_port for i, m in enumerate(members) if i != index] + [port]
    member = HttpMember(members[index].route, cluster_ports=ports, peer_port=port, mode=mode)
    stack.callback(member.stop)
    members[index] = member
    member.wait_serving()
    wait_for_members(members)
    return member


def write(member: HttpMember, key: str, cookie: str | None) -> str:
    """POST /write?k=key; the cookie to use next. Raises unless the write was acknowledged (200)."""
    status, body, set_cookie = http_request(member.http_port, "POST", f"/write?k={key}", cookie)
    if status != 200:
        raise RuntimeError(f"{member.route}: POST /write answered {status}: {body!r}")
    new_cookie = set_cookie or cookie
    assert new_cookie is not None
    return new_cookie


# -- overhead: req/s, CPU per request and per write, added latency --------------------------------

OVERHEAD_VARIANTS = ("plain", "starlette", "single", "3x-async", "3x-ack", "3x-sync")
OVERHEAD_LABELS = {
    "plain": "starlette, no session middleware",
    "starlette": "starlette SessionMiddleware (cookie)",
    "single": "replisession, single member",
    "3x-async": "replisession, 3 members, async",
    "3x-ack": "replisession, 3 members, ack",
    "3x-sync": "replisession, 3 members, sync",
}


@contextlib.contextmanager
def serve_variant(name: str) -> Iterator[tuple[int, list[int], list[HttpMember]]]:
    """The variant's processes: the port wrk drives (member A's), every pid, the members."""
    with contextlib.ExitStack() as stack:
        if name in ("plain", "starlette"):
            port = free_port()
            process = stack.enter_context(running(uvicorn_command(f"asgi_{name}", port), port, env=clean_env()))
            yield port, [process.pid], []
        elif name == "single":
            member = HttpMember("node1")
            stack.callback(member.stop)
            member.wait_serving()
            yield member.http_port, [member.pid], [member]
        else:
            members = start_cluster(stack, name.split("-", 1)[1])
            yield members[0].http_port, [m.pid for m in members], members


def cpu_of(pids: Sequence[int]) -> list[float]:
    return [cpu_seconds(pid) for pid in pids]


def sequential(port: int, cookie: str | None, count: int) -> list[float]:
    """Seconds per GET /hit, one at a time on one keep-alive connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=15)
    headers = {"Cookie": cookie} if cookie else {}
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            connection.request("GET", "/hit", headers=headers)
            response = connection.getresponse()
            response.read()
            times.append(time.perf_counter() - start)
            if response.status != 200:
                raise RuntimeError(f"GET /hit answered {response.status}")
    finally:
        connection.close()
    return times


def measure_variant(wrk: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    with serve_variant(name) as (port, pids, members):
        status, _, cookie = http_request(port, "GET", "/hit")
        if status != 200 or (name != "plain" and cookie is None):
            raise RuntimeError(f"{name}: priming answered {status} with cookie {cookie!r}")
        # Heartbeats and timers cost a little even when idle: measured, then subtracted.
        idle_start, before = time.monotonic(), cpu_of(pids)
        time.sleep(args.idle)  # a measured idle interval, not a wait for anything
        idle_rates = [(a - b) / (time.monotonic() - idle_start) for a, b in zip(cpu_of(pids), before, strict=True)]

        run_wrk(wrk, port, cookie, args.connections, args.warmup)
        before, started = cpu_of(pids), time.monotonic()
        result = run_wrk(wrk, port, cookie, args.connections, args.duration)
        elapsed, after = time.monotonic() - started, cpu_of(pids)
        load_cpu = [(a - b - r * elapsed) / result.requests for a, b, r in zip(after, before, idle_rates, strict=True)]

        before, started = cpu_of(pids), time.monotonic()
        latencies = sequential(port, cookie, args.sequential)
        elapsed, after = time.monotonic() - started, cpu_of(pids)
        seq_cpu = [(a - b - r * elapsed) / len(latencies) for a, b, r in zip(after, before, idle_rates, strict=True)]

        replicated = None
        if len(members) > 1:  # every member's copy has the counter A has (A reads it once more)
            _, n_on_a, _ = http_request(port, "GET", "/hit", cookie)
            copies = [json.loads(http_request(m.http_port, "GET", "/session", cookie)[1]).get("n") for m in members[1:]]
            replicated = all(copy == int(n_on_a) for copy in copies)
    return {
        "requests_per_s": result.requests_per_s,
        "requests": result.requests,
        "errors": result.errors,
        "cpu_per_request_s": sum(load_cpu),
        "cpu_per_request_by_member_s": load_cpu,
        "sequential_cpu_per_request_s": sum(seq_cpu),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "idle_cpu_rates": idle_rates,
        "copies_match": replicated,
    }


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_wrk()
    chosen = args.variants or list(OVERHEAD_VARIANTS)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    print(
        f"\n== overhead: wrk -t1 -c{args.connections} -d{args.duration}s on member A (after {args.warmup}s warm-up), "
        f"then {args.sequential} sequential requests; {args.rounds} rounds, interleaved",
        flush=True,
    )
    for round_index in range(args.rounds):
        for name in chosen:
            sample = measure_variant(wrk, name, args)
            samples[name].append(sample)
            print(
                f"  round {round_index + 1} {name:<10} {sample['requests_per_s']:>8,.0f} req/s  "
                f"cpu/req {fmt_us(sample['cpu_per_request_s'])} us  p50 {fmt_ms(sample['latency_p50_s'])} ms  "
                f"errors {sample['errors']}  copies match {sample['copies_match']}",
                flush=True,
            )
    summary = {}
    for name, runs in samples.items():
        summary[name] = {
            key: median([run[key] for run in runs])
            for key in (
                "requests_per_s",
                "cpu_per_request_s",
                "sequential_cpu_per_request_s",
                "latency_p50_s",
                "latency_p99_s",
            )
        }
        summary[name]["errors"] = sum(run["errors"] for run in runs)
        summary[name]["copies_match"] = (
            None if runs[0]["copies_match"] is None else all(r["copies_match"] for r in runs)
        )
    base = summary.get("starlette", {}).get("requests_per_s")
    single = summary.get("single")
    rows = []
    for name, s in summary.items():
        replication_cpu = s["cpu_per_request_s"] - single["cpu_per_request_s"] if single and "3x" in name else None
        added = s["latency_p50_s"] - single["latency_p50_s"] if single and "3x" in name else None
        s["vs_starlette"] = s["requests_per_s"] / base if base else None
        s["replication_cpu_per_write_s"] = replication_cpu
        s["added_latency_p50_s"] = added
        rows.append(
            (
                OVERHEAD_LABELS[name],
                f"{s['requests_per_s']:,.0f}",
                f"{s['vs_starlette']:.2f}" if base else "-",
                fmt_us(s["cpu_per_request_s"]),
                fmt_us(s["sequential_cpu_per_request_s"]),
                fmt_us(replication_cpu) if replication_cpu is not None else "-",
                fmt_ms(s["latency_p50_s"]),
                fmt_ms(s["latency_p99_s"]),
                fmt_ms(added) if added is not None else "-",
                str(s["errors"]),
                {None: "-", True: "yes", False: "NO"}[s["copies_match"]],
            )
        )
    print_table(
        f"overhead (median of {args.rounds}; CPU summed over every member of the variant)",
        (
            "variant",
            "req/s on A",
            "vs starlette",
            "cpu/req us",
            "cpu/req seq us",
            "repl. cpu/write us",
            "p50 ms",
            "p99 ms",
            "added p50 ms",
            "errors",
            "copies match",
        ),
        rows,
    )
    print(
        "\ncpu/req: user+system CPU of all the variant's processes during the wrk run, less their idle rate, "
        "per request; seq: the same during the sequential requests. repl. cpu/write: cpu/req minus the single "
        "member's. p50/p99/added: the sequential requests (added: minus the single member's p50).\n" + NOISE
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}


# -- failover ----------------------------------------------------------------------------------

FAILOVER_KEYS = ("a", "b", "c", "d", "e")


def wait_until_left(member: HttpMember, route: str, since: float) -> dict[str, Any]:
    """The event of ``member`` dropping ``route`` at or after ``since`` (member's own stamp)."""
    found: list[dict[str, Any]] = []

    def left() -> bool:
        events = member.cluster()["events"]
        found[:] = [e for e in events if e["event"] == "left" and e["route"] == route and e["t"] >= since]
        return bool(found)

    wait_until(left, 30, f"{member.route} notices {route} gone", interval=0.02)
    return found[0]


def read_session(member: HttpMember, cookie: str, deadline: float = 10.0) -> dict[str, Any] | None:
    """The session as ``member`` answers it; retried until it answers 200, None if it never does."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status, body, _ = http_request(member.http_port, "GET", "/session", cookie, timeout=deadline)
        if status == 200:
            result: dict[str, Any] = json.loads(body)
            return result
        time.sleep(0.01)  # polling interval inside a deadline
    return None


def failover(args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== failover: 3 members ({args.mode}), SIGKILL of A, {args.trials} trials", flush=True)
    trials = []
    with contextlib.ExitStack() as stack:
        members = start_cluster(stack, args.mode)
        for trial in range(args.trials):
            a, b, c = members
            cookie = None
            for key in FAILOVER_KEYS:
                cookie = write(a, key, cookie)
            killed = a.kill()
            attempts, first_answer, served = 0, None, None
            while served is None and time.monotonic() - killed < 10:
                attempts += 1
                status, body, set_cookie = http_request(b.http_port, "GET", "/session", cookie, timeout=10)
                now = time.monotonic()
                first_answer = first_answer or now
                full = status == 200 and set(json.loads(body)) == set(FAILOVER_KEYS)
                if full and set_cookie is not None and set_cookie.endswith(f".{b.route}"):
                    served = now
            detected = {}
            for survivor in (b, c):
                left = wait_until_left(survivor, a.route, killed)
                detected[survivor.route] = {"seconds": left["t"] - killed, "reason": left["reason"]}
            result = {
                "first_answer_s": (first_answer or killed) - killed,
                "served_full_rerouted_s": None if served is None else served - killed,
                "attempts": attempts,
                "detected": detected,
            }
            trials.append(result)
            print(
                f"  trial {trial + 1}: B answered the full session with a re-routed cookie after "
                f"{'never' if served is None else fmt_ms(served - killed) + ' ms'} ({attempts} request(s)); "
                + ", ".join(
                    f"{r} dropped A after {fmt_ms(d['seconds'])} ms ({d['reason']})" for r, d in detected.items()
                ),
                flush=True,
            )
            restart(stack, members, 0, args.mode)
    served_times = [t["served_full_rerouted_s"] for t in trials if t["served_full_rerouted_s"] is not None]
    detections = [d["seconds"] for t in trials for d in t["detected"].values()]
    summary = {
        "served_p50_s": median(served_times),
        "served_max_s": max(served_times) if served_times else None,
        "never_served": len(trials) - len(served_times),
        "detected_p50_s": median(detections),
        "detected_max_s": max(detections),
        "trials": len(trials),
    }
    print_table(
        f"failover after SIGKILL ({args.trials} trials, default detection settings: heartbeat 0.5 s, drop 3 s, "
        "probe 1 s)",
        ("measure", "median ms", "max ms"),
        [
            (
                "B serves A's session in full, cookie re-routed",
                fmt_ms(summary["served_p50_s"]),
                fmt_ms(summary["served_max_s"]) if summary["served_max_s"] is not None else "never",
            ),
            ("B and C no longer list A", fmt_ms(summary["detected_p50_s"]), fmt_ms(summary["detected_max_s"])),
        ],
    )
    if summary["never_served"]:
        print(f"  {summary['never_served']} trial(s) never got the full session from B within 10 s")
    return {"settings": settings(args), "summary": summary, "trials": trials}


# -- lost acknowledged writes ----------------------------------------------------------------------


def lossless(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== lost writes: {args.trials} trials x {args.writes} acknowledged writes through A, SIGKILL of A, "
        "read through B",
        flush=True,
    )
    summary = {}
    for mode in args.modes:
        lost_per_trial = []
        with contextlib.ExitStack() as stack:
            members = start_cluster(stack, mode)
            for _ in range(args.trials):
                a, b, _c = members
                cookie = None
                keys = [f"w{i:02d}" for i in range(args.writes)]
                for key in keys:
                    cookie = write(a, key, cookie)  # raises unless acknowledged
                a.kill()
                present = read_session(b, cookie) or {}
                lost_per_trial.append(sum(1 for key in keys if key not in present))
                restart(stack, members, 0, mode)
        summary[mode] = {
            "trials": args.trials,
            "writes": args.trials * args.writes,
            "lost": sum(lost_per_trial),
            "trials_with_loss": sum(1 for n in lost_per_trial if n),
            "lost_per_trial": lost_per_trial,
        }
        print(f"  {mode}: lost {sum(lost_per_trial)} of {args.trials * args.writes}: {lost_per_trial}", flush=True)
    print_table(
        "acknowledged writes lost when the member that acknowledged them is SIGKILLed",
        ("mode", "writes", "lost", "trials with a loss"),
        [
            (m, str(s["writes"]), str(s["lost"]), f"{s['trials_with_loss']} of {s['trials']}")
            for m, s in summary.items()
        ],
    )
    print(f"\nTomcat 10.1, async (its default): {TOMCAT_ASYNC_LOST} lost in the same test.")
    return {"settings": settings(args), "summary": summary}
