"""Instructions per request, counted by callgrind: a CPU measure the machine's noise cannot move.

Run by hand, never by pytest (needs valgrind: ``apt-get install valgrind``)::

    .venv/bin/python benchmarks/instructions.py [--modes single async sync] [--requests 1000]

Wall-clock CPU on a shared 2-core VM varies by 10-20 % from run to run, more than most
single changes to the request path. Callgrind counts the user-space instructions a
process executes, which repeat to about 1 % (often 0.2 %) for the same code and input.
Each variant runs in one process: ``apps:asgi_cluster`` members (one, or three in a send mode), all
hosted on one uvloop loop and connected over loopback, and ``GET /hit`` requests called
straight into member A's ASGI app one at a time (no HTTP server, no load generator). The
process is run twice under callgrind, with ``--requests`` more requests the second time;
the difference, per request, leaves start-up and imports out.

What it counts: every instruction in user space of all members (the writer's request, the
replicas' applying, the acknowledgements), none in the kernel (socket reads and writes,
wake-ups), and one request at a time, so nothing is batched: it shows what a change does
to the Python work per write, not the CPU a loaded cluster spends (``replication.py
overhead`` measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

import apps
from _harness import free_port, print_table, run_script
from inprocess_sessions import AsgiDriver

WARM_UP = 200  # requests before the counted ones, in both runs: every code path warm


def variant(mode: str, requests: int) -> None:
    """The measured process: members on one loop, ``requests`` + WARM_UP requests to A."""
    import uvloop

    members = 1 if mode == "single" else 3
    ports = [free_port() for _ in range(members)]

    def app(route: str, port: int) -> Any:
        for name in [name for name in os.environ if name.startswith("REPLISESSION_")]:
            del os.environ[name]
        os.environ["REPLISESSION_ROUTE"] = route
        if members > 1:
            os.environ.update(
                {
                    "REPLISESSION_SEND_MODE": mode,
                    "REPLISESSION_LISTEN": f"127.0.0.1:{port}",
                    "REPLISESSION_MEMBERS": ",".join(f"127.0.0.1:{p}" for p in ports),
                    "REPLISESSION_CLUSTER_SECRET": "instructions-benchmark",
                    # Under callgrind the process runs ~50 times slower: heartbeats stay rare.
                    "REPLISESSION_HEARTBEAT_INTERVAL": "20",
                    "REPLISESSION_DROP_TIME": "100",
                }
            )
        return apps.asgi_cluster()

    async def start(asgi: Any) -> None:
        started = asyncio.Event()
        startup = asyncio.Queue[dict[str, str]]()
        startup.put_nowait({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            started.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        asyncio.get_running_loop().create_task(asgi(scope, startup.get, send))
        await started.wait()

    async def main() -> None:
        asgis = [app(route, port) for route, port in zip("abc", ports, strict=False)]
        for asgi in asgis:
            await start(asgi)
        member = asgis[0].node.member  # the SessionMiddleware's node
        for _ in range(2000):  # every member sees the others (polled within a deadline)
            if members == 1 or (member is not None and len(member.members()) == members - 1):
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the members did not find each other")
        driver = AsgiDriver(asgis[0])  # GET /hit, straight into A's app, with the session's cookie
        await driver.prime_async()
        for _ in range(WARM_UP + requests):
            await driver.requests(1)
            for _ in range(4):  # the replicas apply, and acknowledge, before the next request
                await asyncio.sleep(0)
        os._exit(0)  # members are not stopped: their goodbyes would be counted too

    uvloop.run(main())


def count(mode: str, requests: int, out: Path) -> int:
    """Instructions callgrind counted in one run of the variant."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--variant",
            mode,
            "--requests",
            str(requests),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    for line in result.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"callgrind counted nothing for {mode}:\n{result.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = ["single", "async", "ack", "sync"]
    parser.add_argument("--modes", nargs="+", default=["single", "async", "sync"], choices=modes)
    parser.add_argument("--requests", type=int, default=1000, help="the difference between the two runs")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the measured process itself
    args = parser.parse_args()
    if args.variant:
        variant(args.variant, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    rows, per_request = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in args.modes:
            base = count(mode, 0, Path(scratch, f"{mode}.0"))
            more = count(mode, args.requests, Path(scratch, f"{mode}.n"))
            per_request[mode] = (more - base) / args.requests
    single = per_request.get("single")
    for mode, instructions in per_request.items():
        replication = "-" if single is None or mode == "single" else f"{instructions - single:,.0f}"
        name = "single member" if mode == "single" else f"3 members, {mode}"
        rows.append([name, f"{instructions:,.0f}", replication])
    title = f"user-space instructions per GET /hit ({args.requests} requests one at a time, in one process)"
    print_table(title, ["variant", "instructions/request", "minus single"], rows)
    return 0


if __name__ == "__main__":
    run_script(main)
