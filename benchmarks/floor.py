"""The floor under a sync write on this machine: the same round trip with none of our code.

Run by hand, never by pytest::

    .venv/bin/python benchmarks/floor.py [--replicas 2] [--work 0 1 5] [--interval 0.002]

A and ``--replicas`` replica processes on 127.0.0.1, each on a uvloop loop as under
uvicorn, connected by TCP with ``TCP_NODELAY``. Every ``--interval`` A writes 200 bytes to
each replica and waits until each has answered 20 bytes: a sync write's shape (one
message out to every replica, one answer back from each), with no framing, HMAC,
decoding or session. Before answering, a replica does ``--work`` units of Python (one
unit: an HMAC-SHA256 of the message and a msgpack decode of a small dict, about 4 us
when warm); 0 answers straight from ``data_received``. Prints the round trip's p50 and
p90 per work setting. Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

from _harness import HOST, free_port, percentile, print_table, run_script, stop

KEY = b"k" * 32
MESSAGE, ANSWER = b"x" * 200, b"a" * 20


def replica(port: int, work: int) -> None:
    import msgpack
    import uvloop

    packed = msgpack.packb({"a": [1, 2, "x" * 50], "b": {"c": 1.5}, "d": "session-id"})

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            for _ in range(work):
                hmac.new(KEY, data, "sha256").digest()
                msgpack.unpackb(packed)
            self.transport.write(ANSWER)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Answer, HOST, port)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


def writer(ports: list[int], writes: int, interval: float) -> list[float]:
    """Seconds per round trip, the first tenth not counted."""
    import uvloop

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        state: dict[str, object] = {"left": 0, "done": None}

        class Wait(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.Transport = transport  # type: ignore[assignment]
                transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def data_received(self, data: bytes) -> None:
                state["left"] = int(state["left"]) - 1  # type: ignore[call-overload]
                done = state["done"]
                if state["left"] == 0 and isinstance(done, asyncio.Future):
                    done.set_result(None)

        peers = []
        for port in ports:
            deadline = time.monotonic() + 20
            while True:
                try:
                    _, protocol = await loop.create_connection(Wait, HOST, port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)  # the replica is still starting: retried within a deadline
            peers.append(protocol)
        times = []
        for _ in range(writes):
            await asyncio.sleep(interval)
            start = time.perf_counter()
            state["left"], state["done"] = len(peers), loop.create_future()
            for peer in peers:
                peer.transport.write(MESSAGE)
            await state["done"]  # type: ignore[misc]
            times.append(time.perf_counter() - start)
        return times[writes // 10 :]

    return uvloop.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--work", type=int, nargs="+", default=[0, 1, 5], help="units of Python per answer")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between writes (0.002)")
    parser.add_argument("--replica", nargs=2, type=int, metavar=("PORT", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replica:
        replica(*args.replica)
        return 0
    rows = []
    for work in args.work:
        ports = [free_port() for _ in range(args.replicas)]
        processes = []
        try:
            for port in ports:
                command = [sys.executable, __file__, "--replica", str(port), str(work)]
                processes.append(subprocess.Popen(command, start_new_session=True))
            times = writer(ports, args.writes, args.interval)
        finally:
            for process in processes:
                stop(process)
        p50, p90 = percentile(times, 50), percentile(times, 90)
        rows.append((str(work), f"{p50 * 1e6:.0f}", f"{p90 * 1e6:.0f}"))
    print_table(
        f"A writes to {args.replicas} replicas and waits for every answer, one write every "
        f"{args.interval * 1e3:g} ms, no replisession code ({args.writes} writes, the first tenth not counted)",
        ("work units per answer", "p50 us", "p90 us"),
        rows,
    )
    return 0


if __name__ == "__main__":
    run_script(main)
