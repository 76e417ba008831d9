"""Where the time of one sync write goes: A sends to B and C and waits for both acks.

Run by hand, never by pytest::

    .venv/bin/python benchmarks/sync_breakdown.py [--writes 2000] [--interval 0.002] [--members 3]

Three bare members (no HTTP, no sessions), each a process of its own on 127.0.0.1 and
each hosted on its own uvloop loop as under uvicorn. A sends ``--writes`` sync DATA
messages one at a time, ``--interval`` apart. Every process stamps the moments that
matter with ``time.perf_counter`` (CLOCK_MONOTONIC on Linux, one clock for every process
of the machine): A's send call and the end of its wait, the start and end of each
``PeerProtocol.flush`` that wrote something, the start of each ``data_received``, and on
the replicas the moment the handler runs. The medians of the steps are printed: what
runs in our Python on each side, and what is the kernel's (a write, and the delivery
that wakes the other process). A write's own duration is shown apart: on two cores
with three processes, the process a write wakes often runs before the write returns.
Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

from _harness import free_port, print_table, run_script, stop

STEPS = (
    ("A: send() called -> its flush starts", "python, A"),
    ("A's flush starts -> B's data_received starts", "kernel: A's writes, delivery, B wakes"),
    ("B: data_received -> the handler runs", "python, B"),
    ("B: the handler ran -> the ack's flush starts", "python, B"),
    ("B's flush starts -> A's data_received from B", "kernel: B's write, delivery, A wakes"),
    ("A: the last ack's data_received -> the wait ends", "python, A"),
    ("total: send() called -> the wait ends", ""),
    ("(A's flush, from start to return)", "kernel, A"),
    ("(B's flush, from start to return)", "kernel, B, and A if it runs first"),
)


def member(role: str, port: int, seed: int, size: int, writes: int, interval: float, out: Path) -> None:
    """One member's process: stamps, and (A) the writes."""
    import uvloop

    from replisession import ClusterConfig
    from replisession.core.messages import SendMode
    from replisession.net import peer
    from replisession.node import ClusterMember
    from replisession.node.loop import gather_futures

    clock = time.perf_counter
    received: list[tuple[str, float]] = []  # (peer route, when data_received started)
    flushes: list[tuple[str, float, float]] = []  # (peer route, start, end) of flushes that wrote
    handled: list[tuple[int, float]] = []  # (write number, when the handler ran)
    data_received, flush = peer.PeerProtocol.data_received, peer.PeerProtocol.flush

    def stamped_data_received(self: Any, data: bytes) -> None:
        received.append((self.peer.route if self.peer else "", clock()))
        data_received(self, data)

    def stamped_flush(self: Any) -> None:
        wrote, start = bool(self._pending), clock()
        flush(self)
        if wrote:
            flushes.append((self.peer.route if self.peer else "", start, clock()))

    peer.PeerProtocol.data_received = stamped_data_received  # type: ignore[method-assign]
    peer.PeerProtocol.flush = stamped_flush  # type: ignore[method-assign]
    seeds = ClusterConfig.from_env({"REPLISESSION_MEMBERS": f"127.0.0.1:{seed}"}).members
    config = ClusterConfig(route=role, listen_ports=(port, port), members=seeds, secret=b"sync-breakdown")

    async def run() -> None:
        node = ClusterMember(config)
        node.on("write", lambda sender, payload: handled.append((payload["n"], clock())))
        await node.start_hosted()
        while len(node.members()) < size - 1:  # noqa: ASYNC110 (membership has no event to await)
            await asyncio.sleep(0.05)
        sends: list[tuple[int, float, float]] = []
        if role == "a":
            await asyncio.sleep(0.5)  # every member sees every other
            for n in range(writes):
                start = clock()
                await gather_futures([node.send("write", {"n": n, "value": b"x" * 40}, SendMode.SYNC)], 5.0)
                sends.append((n, start, clock()))
                await asyncio.sleep(interval)
            (out / "done").write_text("")
        else:
            while not (out / "done").exists():  # noqa: ASYNC110 (another process's file)
                await asyncio.sleep(0.05)
        stamps = {"received": received, "flushes": flushes, "handled": handled, "sends": sends}
        (out / f"{role}.json").write_text(json.dumps(stamps))
        await node.stop_hosted()

    uvloop.run(run())


def analyse(folder: Path, routes: list[str], skip: int) -> dict[str, list[float]]:
    a = json.loads((folder / "a.json").read_text())
    replicas = {route: json.loads((folder / f"{route}.json").read_text()) for route in routes}
    a_flushes = {route: sorted(se for r, *se in a["flushes"] if r == route) for route in routes}
    a_received = {route: sorted(t for r, t in a["received"] if r == route) for route in routes}
    b = replicas[routes[0]]  # B, as the table says; the other replicas are the same shape
    b_handled = dict(b["handled"])
    b_received = sorted(t for _, t in b["received"])
    b_flushes = sorted(se for _, *se in b["flushes"])
    steps: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    for n, start, end in a["sends"][skip:]:
        writes = [_first_after(a_flushes[route], start) for route in routes]  # A's flush to each replica
        handled = b_handled.get(n)
        if handled is None or None in writes:
            continue
        i = bisect.bisect_right(b_received, handled) - 1  # the read that brought write n
        ack = _first_after(b_flushes, handled)
        back = _first_after(a_received[routes[0]], ack[0]) if ack else None
        # The first read from each replica after A wrote to it: its ack (heartbeats are rare).
        answers = [_first_after(a_received[route], write[0]) for route, write in zip(routes, writes, strict=True)]
        if i < 0 or ack is None or back is None or None in answers or max(answers) > end:
            continue
        first_write, last_write = min(w[0] for w in writes), max(w[1] for w in writes)
        values = (
            first_write - start,
            b_received[i] - writes[0][0],
            handled - b_received[i],
            ack[0] - handled,
            back - ack[0],
            end - max(answers),
            end - start,
            last_write - first_write,
            ack[1] - ack[0],
        )
        for (name, _), value in zip(STEPS, values, strict=True):
            steps[name].append(value)
    return steps


def _first_after(stamps: list[Any], moment: float) -> Any:
    """The first of ``stamps`` (times, or [start, end] pairs) at or after ``moment``; None if none."""
    k = bisect.bisect_left(stamps, [moment] if stamps and isinstance(stamps[0], list) else moment)
    return stamps[k] if k < len(stamps) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between writes (0.002)")
    parser.add_argument("--members", type=int, default=3, help="A and this many less one replicas (3)")
    parser.add_argument("--member", nargs=4, metavar=("ROLE", "PORT", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.member:
        role, port, seed, out = args.member
        member(role, int(port), int(seed), args.members, args.writes, args.interval, Path(out))
        return 0
    routes = [chr(ord("b") + i) for i in range(args.members - 1)]
    ports = {role: free_port() for role in ["a", *routes]}
    with tempfile.TemporaryDirectory(prefix="sync-breakdown-") as folder:
        processes = []
        try:
            for role, port in ports.items():
                command = [sys.executable, __file__, "--writes", str(args.writes), "--interval", str(args.interval)]
                command += ["--members", str(args.members), "--member", role, str(port), str(ports["a"]), folder]
                processes.append(subprocess.Popen(command, start_new_session=True))
            deadline = time.monotonic() + 60 + args.writes * (args.interval + 0.01)
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for process in processes:
                stop(process)
        steps = analyse(Path(folder), routes, skip=min(200, args.writes // 10))
    count = len(steps[STEPS[0][0]])
    rows = []
    for name, where in STEPS:
        values = sorted(steps[name])
        p50 = values[len(values) // 2] * 1e6 if values else float("nan")
        p90 = values[len(values) * 9 // 10] * 1e6 if values else float("nan")
        rows.append((name, where, f"{p50:.0f}", f"{p90:.0f}"))
    print_table(
        f"one sync write to {args.members - 1} replicas, {count} writes {args.interval * 1e3:g} ms apart "
        "(steps are medians; they need not add up to the total's median)",
        ("step", "whose time", "p50 us", "p90 us"),
        rows,
    )
    return 0


if __name__ == "__main__":
    run_script(main)
