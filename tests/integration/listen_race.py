"""Processes that start peer channels on one listen range at the same instant.

Run as ``python listen_race.py FIRST LAST WORKERS ROUNDS``: in each round WORKERS
forked processes wait at a barrier, then each starts a :class:`TcpTransport` on
FIRST-LAST under uvloop (as uvicorn's workers do) and reports the port it claims. One
JSON line per round lists the ports (or errors); the transports close only after every
worker of the round reported, so no port is freed and re-used in between.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import secrets
import sys
from typing import Any

import uvloop

from replisession.cluster_config import ClusterConfig
from replisession.net.tcp import TcpTransport


class Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


def worker(ports: tuple[int, int], start: Any, done: Any, results: Any) -> None:
    async def claim() -> None:
        config = ClusterConfig(listen_host="127.0.0.1", listen_ports=ports, secret=b"race", cluster_name="race")
        transport = TcpTransport(config, Quiet(), incarnation=secrets.token_hex(16))
        start.wait()
        try:
            results.put((await transport.start()).port)
        except Exception as exc:  # reported, not raised: the parent's round must complete
            results.put(repr(exc))
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        await transport.close()

    uvloop.run(claim())


def main() -> None:
    first, last, workers, rounds = (int(arg) for arg in sys.argv[1:5])
    context = multiprocessing.get_context("fork")
    for _ in range(rounds):
        start, done, results = context.Barrier(workers), context.Event(), context.Queue()
        processes = [context.Process(target=worker, args=((first, last), start, done, results)) for _ in range(workers)]
        for process in processes:
            process.start()
        claimed = [results.get(timeout=20) for _ in processes]
        done.set()
        for process in processes:
            process.join(timeout=20)
            if process.is_alive():
                process.kill()
        print(json.dumps(claimed), flush=True)


if __name__ == "__main__":
    main()
