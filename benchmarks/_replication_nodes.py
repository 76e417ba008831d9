"""The replication benchmark's sections on bare nodes (``_worker`` processes, or in this process).

* ``lag``: writes on A, three bare nodes; when each value became visible on B and C.
* ``transfer``: a bare donor node holding N sessions; a uvicorn member joins it and
  is asked for requests all along. Timed on the joiner, from the moment it counted
  the donor as a member to the replicator's "state transfer ... complete" line.
* ``memory``: bytes per session of about five small attributes, on a single member
  without a cluster, on a primary that replicates, and on a replica filled by a
  state transfer. Measured twice: tracemalloc's traced bytes, and RSS without it.
* ``profile``: two nodes in this process and cProfile in each thread that does
  replication work (the request, the sender's member loop, the receiver's), per write.

Used by ``replication.py``; see its docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _cluster import CLUSTER_SECRET, HttpMember, Worker, wait_until
from _harness import (
    cpu_seconds,
    fmt_ms,
    fmt_us,
    free_port,
    http_request,
    median,
    percentile,
    print_table,
    rss_bytes,
    settings,
)

__all__ = ["lag", "memory", "profile", "transfer"]

ROUTES = ("node1", "node2", "node3")


# -- replication lag -------------------------------------------------------------------------


def lag(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== lag: {args.writes} writes on A (one every {args.interval * 1e3:g} ms, first {args.skip} not counted), "
        f"3 members as bare nodes, {args.rounds} rounds per mode",
        flush=True,
    )
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    for round_index in range(args.rounds):
        for mode in args.modes:
            with contextlib.ExitStack() as stack:
                ports = [free_port() for _ in ROUTES]
                workers = []
                for index, (route, port) in enumerate(zip(ROUTES, ports, strict=True)):
                    options = ["--record"] if index else []
                    worker = Worker(route, cluster_ports=ports, peer_port=port, mode=mode, options=options)
                    stack.callback(worker.stop)
                    workers.append(worker)
                for worker in workers:
                    worker.ask("start", "started")
                for worker in workers:
                    wait_until(lambda w=worker: len(w.ask("stats", "stats")["members"]) == 2, 30, f"{worker.route}")
                a, *replicas = workers
                pids = [w.process.pid for w in workers]
                idle_rates = _idle_rates(pids, 1.0)
                before, started = [cpu_seconds(pid) for pid in pids], time.monotonic()
                writes = a.ask(f"writes {args.writes} {args.interval}", "writes", 300)
                applied = [dict(r.ask("applied", "applied")["items"]) for r in replicas]
                elapsed = time.monotonic() - started
                cpu = [cpu_seconds(pid) - b - r * elapsed for pid, b, r in zip(pids, before, idle_rates, strict=True)]
            solo_cpu = _solo_write_cpu(args.writes, args.interval)
            sent, done = writes["sent"], writes["done"]
            to_b, to_all, acked = [], [], []
            for i in range(args.skip, args.writes):
                seen = [copy.get(i) for copy in applied]
                if None in seen:
                    continue  # never seen by a replica: counted as missing below
                to_b.append((seen[0] - sent[i]) / 1e9)
                to_all.append((max(seen) - sent[i]) / 1e9)
                acked.append((done[i] - sent[i]) / 1e9)
            sample = {
                "to_b": to_b,
                "to_all": to_all,
                "ack": acked,
                "missing": args.writes - args.skip - len(to_b),
                "failures": writes["failures"],
                "cpu_per_write_by_member_s": [c / args.writes for c in cpu],
                "solo_cpu_per_write_s": solo_cpu / args.writes,
                "replication_cpu_per_write_s": (sum(cpu) - solo_cpu) / args.writes,
            }
            samples[mode].append(sample)
            print(
                f"  round {round_index + 1} {mode:<5}  lag to B p50 {fmt_ms(percentile(to_b, 50))} ms "
                f"p99 {fmt_ms(percentile(to_b, 99))} ms  missing {sample['missing']}  replication CPU "
                f"{fmt_us(sample['replication_cpu_per_write_s'])} us/write",
                flush=True,
            )
    summary = {}
    rows = []
    for mode, runs in samples.items():
        s = {
            "b_p50_s": median([percentile(r["to_b"], 50) for r in runs]),
            "b_p99_s": median([percentile(r["to_b"], 99) for r in runs]),
            "all_p50_s": median([percentile(r["to_all"], 50) for r in runs]),
            "all_p99_s": median([percentile(r["to_all"], 99) for r in runs]),
            "ack_p50_s": median([percentile(r["ack"], 50) for r in runs]),
            "ack_p99_s": median([percentile(r["ack"], 99) for r in runs]),
            "writes_counted": sum(len(r["to_b"]) for r in runs),
            "missing": sum(r["missing"] for r in runs),
            "replication_cpu_per_write_s": median([r["replication_cpu_per_write_s"] for r in runs]),
        }
        summary[mode] = s
        rows.append(
            (
                mode,
                fmt_ms(s["b_p50_s"]),
                fmt_ms(s["b_p99_s"]),
                fmt_ms(s["all_p50_s"]),
                fmt_ms(s["all_p99_s"]),
                fmt_ms(s["ack_p50_s"]),
                fmt_ms(s["ack_p99_s"]),
                str(s["writes_counted"]),
                str(s["missing"]),
                fmt_us(s["replication_cpu_per_write_s"]),
            )
        )
    print_table(
        f"replication lag (median over {args.rounds} rounds of each run's percentile)",
        (
            "mode",
            "to B p50 ms",
            "to B p99 ms",
            "to all p50 ms",
            "to all p99 ms",
            "request waits p50 ms",
            "p99 ms",
            "writes",
            "missing",
            "repl. cpu/write us",
        ),
        rows,
    )
    print(
        "\nlag: from the start of the request's release on A (where the delta is made) until B's listener saw the "
        "value (CLOCK_MONOTONIC is shared by the processes); 'to all': until B and C both had it. request waits: "
        "what a request on A waits for its sends (async: nothing). repl. cpu/write: CPU of A, B and C during the "
        "writes (less their idle rate), minus the same writes on a node without a cluster, per write: replication "
        "at a steady rate with no HTTP server in the processes."
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}


def _idle_rates(pids: list[int], seconds: float) -> list[float]:
    """CPU seconds per second each process uses when nothing is asked of it (heartbeats, timers)."""
    before, started = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(seconds)  # a measured idle interval, not a wait for anything
    elapsed = time.monotonic() - started
    return [(cpu_seconds(pid) - b) / elapsed for pid, b in zip(pids, before, strict=True)]


def _solo_write_cpu(count: int, interval: float) -> float:
    """CPU seconds of the same write loop on a node with no cluster (the part that is not replication)."""
    with contextlib.ExitStack() as stack:
        solo = Worker("solo", options=["--no-cluster"])
        stack.callback(solo.stop)
        solo.ask("start", "started")
        [idle_rate] = _idle_rates([solo.process.pid], 1.0)
        before, started = cpu_seconds(solo.process.pid), time.monotonic()
        solo.ask(f"writes {count} {interval}", "writes", 300)
        return cpu_seconds(solo.process.pid) - before - idle_rate * (time.monotonic() - started)


# -- state transfer --------------------------------------------------------------------------

_SENT = re.compile(r": (\d+) sessions in ([\d.]+)s")


def one_transfer(donor: Worker, cookie: str, name: str) -> dict[str, Any]:
    """A new member joins ``donor``; GET /hit on it without pause until the transfer is done."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        joiner = HttpMember(name, cluster_ports=[donor.peer_port, port], peer_port=port)
        stack.callback(joiner.stop)
        joiner.wait_serving()  # uvicorn opens its port after the lifespan started the member
        hits: list[tuple[float, float, int]] = []  # (sent at, seconds, status)
        early: dict[str, Any] | None = None
        deadline = time.monotonic() + 120
        while True:
            sent = time.monotonic()
            status = http_request(joiner.http_port, "GET", "/hit")[0]
            hits.append((sent, time.monotonic() - sent, status))
            state = joiner.cluster()
            if early is None and state["members"]:
                # The donor's newest session is in the transfer's last batch: ask for it now.
                sent = time.monotonic()
                status, body, _ = http_request(joiner.http_port, "GET", "/session", cookie)
                early = {"t": sent, "status": status, "attributes": len(json.loads(body)) if status == 200 else 0}
            if state["transfer_done"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the state transfer did not complete within 120 s\n{joiner.log_tail()}")
        joined = next(e["t"] for e in state["events"] if e["event"] == "joined")
        complete = next(e["t"] for e in state["events"] if e["event"] == "transfer_complete")
        donor_log = donor.wait_for("transfer_sent", 60)["message"]
        rss = rss_bytes(joiner.pid)
        sessions = state["sessions"]
    found = _SENT.search(donor_log)
    during = [h for h in hits if joined <= h[0] <= complete]
    return {
        "transfer_s": complete - joined,
        "donor_stream_s": float(found.group(2)) if found else None,
        "sessions_sent": int(found.group(1)) if found else None,
        "joiner_sessions": sessions,
        "joiner_rss_bytes": rss,
        "requests_during": len(during),
        "requests_during_ok": sum(1 for h in during if h[2] == 200),
        "request_during_max_s": max((h[1] for h in during), default=None),
        "first_request_after_join_s": hits[0][0] - joined,
        "early_session": None
        if early is None
        else {**early, "during_transfer": early["t"] < complete, "t": early["t"] - joined},
    }


def transfer(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== transfer: a bare donor with {', '.join(f'{n:,}' for n in args.sizes)} sessions (5 attributes each); "
        f"a uvicorn member joins it, {args.rounds} rounds per size",
        flush=True,
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        donor = Worker("donor")
        stack.callback(donor.stop)
        donor.ask("start", "started")
        filled = 0
        for size in sorted(args.sizes):
            fill = donor.ask(f"fill {size - filled}", "filled", 900)
            filled = size
            print(f"  donor filled to {fill['sessions']:,} sessions ({fill['seconds']:.1f} s)", flush=True)
            cookie = donor.ask("cookie", "cookie")["value"]
            runs = samples.setdefault(str(size), [])
            for round_index in range(args.rounds):
                run = one_transfer(donor, cookie, f"joiner{size}r{round_index}")
                runs.append(run)
                early = run["early_session"]
                print(
                    f"  {size:>7,} round {round_index + 1}: {run['sessions_sent']:,} sessions in "
                    f"{run['transfer_s']:.3f} s on the joiner (donor's stream {run['donor_stream_s']} s); "
                    f"{run['requests_during_ok']}/{run['requests_during']} requests answered 200 meanwhile; "
                    + (
                        "untransferred session asked for "
                        + ("during" if early["during_transfer"] else "after")
                        + f" the transfer: {early['attributes']} of 5 attributes"
                        if early
                        else "no early session request"
                    ),
                    flush=True,
                )
    summary = {}
    rows = []
    for size, runs in samples.items():
        during = sum(r["requests_during"] for r in runs)
        ok = sum(r["requests_during_ok"] for r in runs)
        early = [r["early_session"] for r in runs if r["early_session"] and r["early_session"]["during_transfer"]]
        s = {
            "transfer_p50_s": median([r["transfer_s"] for r in runs]),
            "transfer_max_s": max(r["transfer_s"] for r in runs),
            "donor_stream_p50_s": median([r["donor_stream_s"] for r in runs if r["donor_stream_s"] is not None]),
            "served_during_transfer": f"{ok} of {during}",
            "served_during_transfer_ok": ok == during if during else None,
            "request_during_max_s": max((r["request_during_max_s"] or 0.0 for r in runs), default=None),
            "early_session_full": f"{sum(1 for e in early if e['attributes'] == 5)} of {len(early)}",
            "joiner_rss_mib": median([r["joiner_rss_bytes"] / 2**20 for r in runs]),
        }
        summary[size] = s
        rows.append(
            (
                f"{int(size):,}",
                f"{s['transfer_p50_s']:.3f}",
                f"{s['transfer_max_s']:.3f}",
                f"{s['donor_stream_p50_s']:.3f}",
                s["served_during_transfer"],
                fmt_ms(s["request_during_max_s"]),
                s["early_session_full"],
                f"{s['joiner_rss_mib']:.0f}",
            )
        )
    print_table(
        f"state transfer to a joining member (median of {args.rounds})",
        (
            "sessions",
            "transfer s",
            "max s",
            "donor stream s",
            "requests 200 meanwhile",
            "slowest ms",
            "untransferred session full",
            "joiner RSS MiB",
        ),
        rows,
    )
    print(
        "\ntransfer: on the joiner, from counting the donor as a member to 'state transfer ... complete'. donor "
        "stream: the donor's own log (first batch built to last acknowledged). requests: GET /hit on the joiner, "
        "one after another, sent while the transfer ran. untransferred session: a request for the donor's newest "
        "session (in the last batch), sent as soon as the joiner listed the donor."
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}


# -- memory per session ------------------------------------------------------------------------


def _per_session(after: dict[str, Any], before: dict[str, Any], count: int) -> dict[str, float]:
    return {key: (after[key] - before[key]) / count for key in ("traced", "rss")}


def memory_round(count: int, traced: bool) -> dict[str, dict[str, float]]:
    options = ["--tracemalloc"] if traced else []
    result = {}
    with contextlib.ExitStack() as stack:
        plain = Worker("plain", options=[*options, "--no-cluster"])
        stack.callback(plain.stop)
        before = plain.ask("start", "started")
        plain.ask(f"fill {count}", "filled", 600)
        result["single member, no cluster"] = _per_session(plain.ask("stats settle", "stats"), before, count)
        plain.stop()

        primary = Worker("node1", options=options)
        stack.callback(primary.stop)
        before = primary.ask("start", "started")
        primary.ask(f"fill {count}", "filled", 600)
        result["primary (replicating)"] = _per_session(primary.ask("stats settle", "stats"), before, count)

        port = free_port()
        replica = Worker("node2", cluster_ports=[primary.peer_port, port], peer_port=port, options=options)
        stack.callback(replica.stop)
        before = replica.ready  # before the node started: its member and loop are counted too
        replica.ask("start", "started")
        replica.wait_for("transfer_complete", 300)
        stats = replica.ask("stats settle", "stats")
        if stats["sessions"] != count:
            raise RuntimeError(f"the replica holds {stats['sessions']} sessions, not {count}")
        result["replica (by state transfer)"] = _per_session(stats, before, count)
    return result


def memory(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== memory: {args.sessions:,} sessions of 5 small attributes, {args.rounds} rounds with tracemalloc and "
        f"{args.rounds} without (for RSS)",
        flush=True,
    )
    samples: dict[str, list[dict[str, float]]] = {}
    for traced in (True, False):
        for _ in range(args.rounds):
            for role, values in memory_round(args.sessions, traced).items():
                samples.setdefault(role, []).append({"traced": values["traced"]} if traced else {"rss": values["rss"]})
    summary = {
        role: {
            "traced_bytes": median([r["traced"] for r in runs if "traced" in r]),
            "rss_bytes": median([r["rss"] for r in runs if "rss" in r]),
        }
        for role, runs in samples.items()
    }
    print_table(
        f"memory per session (median of {args.rounds}; {args.sessions:,} sessions)",
        ("where", "tracemalloc bytes", "RSS bytes"),
        [(role, f"{s['traced_bytes']:,.0f}", f"{s['rss_bytes']:,.0f}") for role, s in summary.items()],
    )
    print(
        "\ntracemalloc: Python allocations that remain after gc, per session; RSS: the resident set's growth "
        "without tracemalloc (includes allocator slack). The replica's count starts before its node started."
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}


# -- profile -------------------------------------------------------------------------------------


def _thread_cpu(native_id: int) -> float:
    """CPU seconds one thread of this process has used (10 ms resolution, from /proc)."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _in_loop(member: Any, action: Callable[[], Any]) -> Any:
    """Run ``action`` on a member's loop thread and return its result (benchmark only: a private loop)."""

    async def call() -> Any:
        return action()

    return member._loop_thread.submit(call()).result(10)


def _print_profile(title: str, profiler: cProfile.Profile, per: int, unit: str, top: int) -> None:
    stats = pstats.Stats(profiler, stream=io.StringIO()).strip_dirs()
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())
    print(f"\n== {title}: {total / per * 1e6:.1f} us of thread CPU per {unit} under cProfile (inflated; compare rows)")
    print(f"   tottime_us  cumtime_us  calls/{unit}  function")
    for (file, line, function), (_cc, calls, tottime, cumtime, _callers) in sorted(
        entries.items(), key=lambda item: item[1][2], reverse=True
    )[:top]:
        print(
            f"   {tottime / per * 1e6:>10.2f}  {cumtime / per * 1e6:>10.2f}  "
            f"{calls / per:>{len(unit) + 6}.2f}  {function} ({file}:{line})"
        )


def _node(route: str, port: int | None, seed: int, mode: str) -> Any:
    from apps import SECRET_KEY

    from replisession import ClusterConfig
    from replisession.config import SessionConfig
    from replisession.node import Node

    if port is None:  # no cluster: the same node without any replication
        return Node(SessionConfig.build(secret_key=SECRET_KEY, route=route))
    members = ClusterConfig.from_env({"REPLISESSION_MEMBERS": f"127.0.0.1:{seed}"}).members
    config = ClusterConfig(
        route=route, listen_ports=(port, port), members=members, secret=CLUSTER_SECRET, send_mode=mode
    )
    return Node(SessionConfig.build(secret_key=SECRET_KEY, route=route), cluster=config)


def _write_loop(node: Any, count: int, interval: float = 0.0) -> str:
    """``count`` requests changing one attribute of one session on ``node``, as the middleware does.

    With an ``interval``, one write at a time: the member loops wake up for each, as under
    real traffic, instead of sending back-to-back writes in one loop iteration.
    """
    replicator = node.replicator
    session = node.new_session()
    session["n"] = 0
    node.release(session)
    session_id: str = session.id
    for i in range(count):
        loaded = node.load(session_id)
        if replicator is not None:
            replicator.begin()
        loaded["n"] = i
        node.release(loaded)
        if replicator is not None:
            for future in replicator.pending():
                future.result(10)
        if interval:
            time.sleep(interval)  # pacing, not a wait for anything
    return session_id


def profile(args: argparse.Namespace) -> None:
    """Where replication CPU goes: A writes to B, both in this process, per thread.

    Per-thread CPU without a profiler first (from /proc, so the threads' GIL waits
    are not counted), then cProfile with a per-thread CPU clock in each thread.
    """
    writes = args.writes
    alone = _node("solo", None, 0, args.mode)
    alone.start()
    try:
        _write_loop(alone, 300)
        before = time.thread_time()
        _write_loop(alone, writes, args.interval)
        solo_us = (time.thread_time() - before) / writes * 1e6
    finally:
        alone.stop()

    seed = free_port()
    a, b = _node("a", seed, seed, args.mode), _node("b", free_port(), seed, args.mode)
    a.start()
    b.start()
    try:
        wait_until(lambda: bool(a.member.members() and b.member.members()), 30, "a and b see each other")

        def settle(session_id: str, value: int) -> None:
            wait_until(lambda: (b.store.peek(session_id) or {}).get("n") == value, 30, "b has the last write")

        settle(_write_loop(a, 300), 299)  # warm-up
        loop_ids = [_in_loop(m, threading.get_native_id) for m in (a.member, b.member)]
        cpu_before = [_thread_cpu(t) for t in loop_ids]
        request_before, wall = time.thread_time(), time.perf_counter()
        session_id = _write_loop(a, writes, args.interval)
        request_cpu = time.thread_time() - request_before
        settle(session_id, writes - 1)
        wall = time.perf_counter() - wall
        sender, receiver = ((_thread_cpu(t) - c) for t, c in zip(loop_ids, cpu_before, strict=True))
        print(
            f"\n{writes} writes A -> B ({args.mode}, one every {args.interval * 1e3:g} ms), both nodes in this "
            "process, no profiler; CPU per write:\n"
            f"  request thread on A      {request_cpu / writes * 1e6:>7.1f} us  "
            f"(the same loop without a cluster: {solo_us:.1f} us)\n"
            f"  A's member loop (send)   {sender / writes * 1e6:>7.1f} us\n"
            f"  B's member loop (apply)  {receiver / writes * 1e6:>7.1f} us\n"
            f"  replication, A + one replica: "
            f"{(request_cpu + sender + receiver) / writes * 1e6 - solo_us:.1f} us; wall {wall / writes * 1e6:.0f} us"
        )

        request_profile = cProfile.Profile(time.thread_time)
        loop_profiles = [cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)]
        for member, profiler in zip((a.member, b.member), loop_profiles, strict=True):
            _in_loop(member, profiler.enable)
        request_profile.enable()
        session_id = _write_loop(a, writes, args.interval)
        request_profile.disable()
        settle(session_id, writes - 1)
        for member, profiler in zip((a.member, b.member), loop_profiles, strict=True):
            _in_loop(member, profiler.disable)

        if args.transfer:
            b.stop()
            for i in range(args.transfer):
                session = a.new_session()
                session.update({"user": f"user-{i}", "cart": [1, 2, 3], "n": i, "theme": "dark", "seen": 1.5 + i})
                a.release(session)
            count = len(a.store)
            donor_profile = cProfile.Profile(time.thread_time)
            _in_loop(a.member, donor_profile.enable)
            joiner = _node("c", free_port(), seed, args.mode)
            joiner_profile = cProfile.Profile(time.thread_time)
            started = time.perf_counter()
            joiner.start()
            _in_loop(joiner.member, joiner_profile.enable)
            try:
                # Done only once it holds every session: before it meets A the joiner has no
                # transfer to wait for, so transfer_done alone can read True at once.
                wait_until(
                    lambda: joiner.replicator.manager.transfer_done and len(joiner.store) >= count,
                    300,
                    "transfer",
                    interval=0.005,
                )
                took = time.perf_counter() - started
                _in_loop(joiner.member, joiner_profile.disable)
                _in_loop(a.member, donor_profile.disable)
            finally:
                joiner.stop()
            print(f"\nstate transfer of {count:,} sessions in this process: {took:.2f} s with cProfile on")
    finally:
        b.stop()
        a.stop()
    _print_profile("request thread on A (load, write, release, wait)", request_profile, writes, "write", args.top)
    _print_profile("A's member loop (send)", loop_profiles[0], writes, "write", args.top)
    _print_profile("B's member loop (receive, apply, answer)", loop_profiles[1], writes, "write", args.top)
    if args.transfer:
        _print_profile("donor's member loop (transfer)", donor_profile, count, "session", args.top)
        _print_profile("joiner's member loop (transfer)", joiner_profile, count, "session", args.top)
