"""Hosts of several workers (``uvicorn --workers N``, ``gunicorn -w N``) as real processes.

A host is simulated by a loopback address of its own (127.0.0.2, 127.0.0.3, ...: the
whole 127.0.0.0/8 is local on Linux). Its workers share its HTTP port and its route,
and each is a cluster member bound to the first free port of the host's peer range
(autoBind); the seed list names every host's range. The server runs in its own
session, so the host dies whole (master and workers) by its pid.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from replisession.cli.demo_cluster import candidate_ports, port_is_free

from .cluster_helpers import CLUSTER_SECRET, FASTAPI, FLASK, SECRET_KEY, TIMINGS, Example, Response, cookie_of
from .servers import BIN, ROOT, free_port, kill_group, request, wait_until_serving


@dataclass(frozen=True)
class Server:
    """How to serve an example with several workers on one address and port."""

    name: str
    example: Example  # the app, and the Set-Cookie its framework writes

    def command(self, host: str, port: int, workers: int) -> list[str]:
        if self.name == "uvicorn":
            return [
                str(BIN / "uvicorn"), "app:app", "--app-dir", "examples/fastapi_app", "--host", host,
                "--port", str(port), "--workers", str(workers), "--log-level", "warning",
            ]  # fmt: skip
        return [
            str(BIN / "gunicorn"), "--chdir", "examples/flask_app", "-w", str(workers), "-b", f"{host}:{port}",
            "--log-level", "warning", "app:app",
        ]  # fmt: skip


UVICORN = Server("uvicorn", FASTAPI)
GUNICORN = Server("gunicorn", FLASK)


def free_port_range(hosts: list[str], count: int) -> tuple[int, int]:
    """``count`` consecutive ports free on every one of ``hosts`` (the same numbers on each)."""
    for first in candidate_ports(count):
        ports = range(first, first + count)
        if all(port_is_free(host, port) for host in hosts for port in ports):
            return first, ports[-1]
    raise RuntimeError(f"no {count} consecutive free ports on {hosts}")


class WorkerHost:
    """One host: a server with ``workers`` workers, every one a member with the host's route."""

    def __init__(
        self, server: Server, address: str, route: str, workers: int, peers: tuple[int, int], seeds: str, log_dir: Path
    ) -> None:
        self.server = server
        self.address = address
        self.route = route
        self.workers = workers
        self.http_port = free_port(address)
        env = {
            **os.environ,
            "REPLISESSION_SECRET_KEY": SECRET_KEY,
            "REPLISESSION_ROUTE": route,
            "REPLISESSION_LISTEN": f"{address}:{peers[0]}-{peers[1]}",  # each worker binds the first free port
            "REPLISESSION_MEMBERS": seeds,  # every host's range, the same list on every host
            "REPLISESSION_CLUSTER_SECRET": CLUSTER_SECRET,
            **TIMINGS,
        }
        self._killed = False
        self.log = log_dir / f"{server.name}-{route}-{address}-{self.http_port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                server.command(address, self.http_port, workers),
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the master's pid is the group id of all its workers
            )

    def __repr__(self) -> str:
        return (
            f"<{self.server.name} x{self.workers} {self.route} {self.address}:{self.http_port} pid={self.process.pid}>"
        )

    def wait_serving(self) -> None:
        wait_until_serving(self.http_port, self.process, self.log, host=self.address)

    def call(self, method: str, path: str, cookie: str | None = None) -> Response:
        status, headers, body = request(self.http_port, method, path, cookie, host=self.address)
        return Response(status, headers, body)

    def set_cookie(self, value: str) -> str:
        """The Set-Cookie this host's framework writes for a cookie value re-routed to this host."""
        return self.server.example.set_cookie(value, self.route)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """The host dies: SIGKILL to the master and every worker (its process group); every
        thread of each has exited, its sockets closed, before this returns."""
        if self._killed:
            return
        self._killed = True
        kill_group(self.process)


def wait_until_hosts_replicate(hosts: list[WorkerHost], deadline: float = 20.0) -> None:
    """Each host's writes reach the other hosts, whichever of its workers writes.

    For each pair of hosts, a session is written through the writer host and, after
    each write, read through the reader host under the READER's route (so the reader
    serves a copy of its own host, fetched from no other host), until every worker of
    the writer has written and every worker of the reader has served the latest
    write. A write counts only once the reader serves it: a delta reaches only the
    members the writer knows when it writes.
    """
    end = time.monotonic() + deadline
    for writer in hosts:
        for reader in hosts:
            if reader is writer:
                continue
            cookie = cookie_of(writer.call("POST", "/counter"))
            value = cookie.rsplit(".", 1)[0]
            writers: set[int] = set()
            readers: set[int] = set()
            while len(writers) < writer.workers or len(readers) < reader.workers:
                if time.monotonic() > end:
                    logs = "\n".join(f"--- {host!r} log:\n{host.log_tail()}" for host in hosts)
                    raise AssertionError(
                        f"{reader!r} did not serve {writer!r}'s writes from every worker within {deadline}s "
                        f"(writers {sorted(writers)}, readers {sorted(readers)})\n{logs}"
                    )
                wrote = writer.call("POST", "/counter", cookie).json()
                read = reader.call("GET", "/api/state", f"{value}.{reader.route}").json()
                if read["counter"] == wrote["counter"]:
                    writers.add(wrote["pid"])
                    readers.add(read["pid"])
                else:
                    time.sleep(0.05)  # not joined yet: polling interval inside a deadline
