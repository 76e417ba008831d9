"""Cluster members as real example-app processes on loopback, for the replication tests.

Each member is one server process (uvicorn, or a gunicorn master and its worker)
configured only by ``REPLISESSION_*`` variables, started in its own session so that
its whole process group can be killed by the leader's pid. Waits poll with a
deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .servers import BIN, ROOT, free_port, kill_group, request, wait_until_serving

SECRET_KEY = "replication-test-secret-key"
CLUSTER_SECRET = "replication-test-cluster-secret"
TIMINGS = {  # short, so that joining and failure detection take well under a second or two
    "REPLISESSION_HEARTBEAT_INTERVAL": "0.2",
    "REPLISESSION_DROP_TIME": "1.0",
    "REPLISESSION_PROBE_TIMEOUT": "0.5",
}
COOKIE = re.compile(r"JSESSIONID=([A-Za-z0-9_-]{67})\.([a-z0-9]+)(?=;)")


@dataclass(frozen=True)
class Example:
    """One example app: how to serve it on a port, and the Set-Cookie its framework writes."""

    name: str
    command: Callable[[int], list[str]]
    cookie_attributes: str  # what follows the value in Set-Cookie (no Max-Age/Expires in either)

    def set_cookie(self, value: str, route: str) -> str:
        return f"JSESSIONID={value}.{route}; {self.cookie_attributes}"


FASTAPI = Example(
    "fastapi",
    lambda port: [
        str(BIN / "uvicorn"),
        "app:app",
        "--app-dir",
        "examples/fastapi_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ],
    "path=/; httponly; samesite=lax",
)
FLASK = Example(
    "flask",
    lambda port: [
        str(BIN / "gunicorn"),
        "--chdir",
        "examples/flask_app",
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "app:app",
    ],
    "HttpOnly; Path=/",  # Flask: SESSION_COOKIE_SAMESITE is None by default
)


class Member:
    """One example-app process, a cluster member named by its route."""

    def __init__(self, example: Example, route: str, seed_port: int, log_dir: Path, **extra: str) -> None:
        self.example = example
        self.route = route
        self.http_port = free_port()
        self.peer_port = seed_port if route == "node1" else free_port()
        env = {
            **os.environ,
            "REPLISESSION_SECRET_KEY": SECRET_KEY,
            "REPLISESSION_ROUTE": route,
            "REPLISESSION_LISTEN": f"127.0.0.1:{self.peer_port}",
            "REPLISESSION_MEMBERS": f"127.0.0.1:{seed_port}",  # one seed list, the same for every member
            "REPLISESSION_CLUSTER_SECRET": CLUSTER_SECRET,
            **TIMINGS,
            **{f"REPLISESSION_{key.upper()}": value for key, value in extra.items()},
        }
        self._killed = False
        self.log = log_dir / f"{example.name}-{route}-{self.http_port}.log"
        with self.log.open("wb") as output:
            # Its own session: the pid is the process group id, so a gunicorn master
            # and its worker are killed together by that pid.
            self.process = subprocess.Popen(
                example.command(self.http_port),
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __repr__(self) -> str:
        return f"<{self.example.name} {self.route} pid={self.process.pid} http={self.http_port}>"

    def wait_serving(self) -> None:
        wait_until_serving(self.http_port, self.process, self.log)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL to the member's process group (a gunicorn master and its worker); every thread
        of each has exited, its sockets closed, before this returns.

        Also the teardown (it works on a SIGSTOPped process too); once done, the group
        id is never signalled again, so a later call cannot reach a reused id.
        """
        if self._killed:
            return
        self._killed = True
        kill_group(self.process)

    # -- HTTP ----------------------------------------------------------------------------

    def call(self, method: str, path: str, cookie: str | None = None) -> Response:
        status, headers, body = request(self.http_port, method, path, cookie)
        return Response(status, headers, body)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        assert self.status == 200, (self.status, self.headers, self.body)
        return dict(json.loads(self.body))

    @property
    def set_cookie(self) -> str | None:
        return self.headers.get("set-cookie")

    def cookie(self) -> tuple[str, str]:
        """The issued cookie as (value without the route, route)."""
        header = self.set_cookie
        assert header is not None, f"no Set-Cookie: {self.status} {self.headers}"
        match = COOKIE.match(header)
        assert match is not None, header
        return match.group(1), match.group(2)


class Cluster:
    """Members started on loopback from one seed, all stopped by their pids at the end."""

    def __init__(self, example: Example, log_dir: Path) -> None:
        self.example = example
        self.log_dir = log_dir
        self.seed_port = free_port()
        self.members: list[Member] = []

    def start(self, *routes: str, **extra: str) -> list[Member]:
        started = [Member(self.example, route, self.seed_port, self.log_dir, **extra) for route in routes]
        self.members.extend(started)
        for member in started:
            member.wait_serving()
        return started

    def stop(self) -> None:
        for member in self.members:
            member.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {m!r}\n{m.log_tail()}" for m in self.members)


def wait_until_joined(members: list[Member], deadline: float = 15.0) -> float:
    """Every member sees every other: a session written on each is readable through all the others.

    There is no status endpoint: each member creates a probe session, and every other
    member is polled with its cookie until it serves the probe's latest counter. The
    writer clicks again before each retry: a delta goes only to the members the writer
    knows when it writes, so a click made before it had joined reaches nobody.
    Returns the seconds it took.
    """
    start = time.monotonic()
    end = start + deadline
    for writer in members:
        response = writer.call("POST", "/counter")
        cookie, count = cookie_of(response), response.json()["counter"]
        for reader in members:
            if reader is writer:
                continue
            while (seen := reader.call("GET", "/api/state", cookie).json()["counter"]) != count:
                if time.monotonic() > end:
                    raise AssertionError(
                        f"{reader!r} did not serve {writer!r}'s session within {deadline}s "
                        f"(counter {seen}, expected {count})"
                    )
                time.sleep(0.05)  # polling interval inside a deadline
                count = writer.call("POST", "/counter", cookie).json()["counter"]
    return time.monotonic() - start


def cookie_of(response: Response) -> str:
    """The value to send back in ``Cookie: JSESSIONID=...`` (with the issuing member's route)."""
    value, route = response.cookie()
    return f"{value}.{route}"
