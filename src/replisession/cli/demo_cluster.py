"""The demo's cluster: FastAPI example processes on loopback, configured only by ``REPLISESSION_*``.

Each member is ``python -m uvicorn app:app --app-dir <examples/fastapi_app>`` in a
session of its own, so it is signalled by its pid alone and never by the terminal's
Ctrl-C (the demo stops what it started, in order). The example app is the
repository's own, found next to this package in a checkout (``pip install -e .``,
as ``./scripts/demo`` does): the demo runs exactly what the README tells users to
deploy, with no second copy to drift from it. An installed wheel has no examples;
``--app-dir`` then names any folder whose ``app.py`` defines ``app``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .devbalancer import Backend
from .status import StatusError, fetch_report

__all__ = [
    "DemoCluster",
    "DemoError",
    "DemoMember",
    "candidate_ports",
    "example_app_dir",
    "free_port",
    "free_port_range",
    "port_is_free",
]

METRICS_PATH = "/replisession/metrics"
#: Short failure detection, so a killed member is noticed well within a demo step.
TIMINGS = {
    "REPLISESSION_HEARTBEAT_INTERVAL": "0.2",
    "REPLISESSION_DROP_TIME": "1.0",
    "REPLISESSION_PROBE_TIMEOUT": "0.5",
}
#: Members log replisession.* at INFO (membership changes, failovers), uvicorn only its warnings.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "replisession": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "uvicorn": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        "uvicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}


class DemoError(Exception):
    """Something the user can fix (a busy port, a missing example or extra); the message says what."""


def example_app_dir(given: str | None = None) -> Path:
    """The folder of the FastAPI example (or ``given``), checked to hold an ``app.py``."""
    if given is not None:
        folder = Path(given).resolve()
        if not (folder / "app.py").is_file():
            raise DemoError(f"--app-dir {given}: there is no app.py in {folder}")
        return folder
    folder = Path(__file__).resolve().parents[3] / "examples" / "fastapi_app"
    if not (folder / "app.py").is_file():
        raise DemoError(
            "the FastAPI example (examples/fastapi_app) is not next to this installation: run the demo "
            "from a clone of the repository (./scripts/demo installs it there), or pass --app-dir with "
            "a folder whose app.py defines `app`"
        )
    return folder


def _outgoing_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; its default elsewhere)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidate_ports(count: int = 1) -> list[int]:
    """First ports of ``count`` consecutive ones to try, in random order, outside the range the
    kernel gives outgoing connections: a port found free there cannot be taken, before our
    server binds it, by a connection a running member opens (asking the kernel for a free port
    with bind(0) draws from that very range, and lost that race under load)."""
    low, high = _outgoing_ports()
    pools = [(20000, low - 1), (high + 1, 65535)]
    ports = [port for first, last in pools for port in range(first, last - count + 2)]
    return random.sample(ports, min(len(ports), 200))


#: Ports this process handed out lately: a port chosen for a server that has not bound it yet
#: is still free, and must not be handed out again (two members were once given one port).
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=1024)
_HANDING_OUT = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    with _HANDING_OUT:
        for port in candidate_ports():
            if port not in _HANDED_OUT and port_is_free(host, port):
                _HANDED_OUT.append(port)
                return port
    with socket.socket() as sock:  # no room outside the kernel's range: any free port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port_range(count: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """``count`` consecutive free ports, for the members' shared listen range (autoBind)."""
    with _HANDING_OUT:
        for first in candidate_ports(count):
            ports = range(first, first + count)
            if not any(port in _HANDED_OUT for port in ports) and all(port_is_free(host, port) for port in ports):
                _HANDED_OUT.extend(ports)
                return first, first + count - 1
    raise DemoError(f"found no {count} consecutive free ports on {host}")


class DemoMember:
    """One uvicorn process of the example app, a cluster member named by its route."""

    def __init__(self, route: str, http_port: int, env: dict[str, str], command: list[str], log: Path) -> None:
        self.route = route
        self.http_port = http_port
        self.env = env
        self.command = command
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def backend(self) -> Backend:
        return Backend(self.route, "127.0.0.1", self.http_port)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL, as a crash would be, and reap it."""
        self.send(signal.SIGKILL)
        self.wait(10.0)

    def send(self, sig: signal.Signals) -> None:
        """Signal its process group, without waiting."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        """True once it exited (reaped), False if it still runs after ``timeout`` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self, *needles: str) -> list[str]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if any(needle in line for needle in needles)]

    def report(self, timeout: float = 2.0) -> dict[str, Any]:
        return fetch_report("127.0.0.1", self.http_port, METRICS_PATH, timeout)


class DemoCluster:
    """``count`` members of the example app on loopback, sharing one seed list and listen range."""

    def __init__(self, folder: Path, app_dir: Path, count: int) -> None:
        first, last = free_port_range(count)
        peer_range = f"127.0.0.1:{first}-{last}"
        self.peer_range = peer_range
        (folder / "logging.json").write_text(json.dumps(LOGGING))
        common = {
            **os.environ,
            "REPLISESSION_SECRET_KEY": secrets.token_urlsafe(32),
            "REPLISESSION_CLUSTER_SECRET": secrets.token_urlsafe(32),
            "REPLISESSION_LISTEN": peer_range,  # the first free port of the range (autoBind)
            "REPLISESSION_MEMBERS": peer_range,  # the same seeds for all; a member skips its own address
            "REPLISESSION_METRICS_PATH": METRICS_PATH,
            **TIMINGS,
        }
        self.members = []
        for number in range(1, count + 1):
            route = f"node{number}"
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--app-dir",
                str(app_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-config",
                str(folder / "logging.json"),
            ]
            env = {**common, "REPLISESSION_ROUTE": route}
            self.members.append(DemoMember(route, port, env, command, folder / f"{route}.log"))

    def by_route(self, route: str) -> DemoMember:
        return next(member for member in self.members if member.route == route)

    def start(self) -> None:
        for member in self.members:
            member.start()

    def stop(self, grace: float = 10.0) -> tuple[list[DemoMember], list[DemoMember]]:
        """Stop every member still running, by its pid: SIGTERM to all at once (each leaves
        gracefully), then SIGKILL to any still running ``grace`` seconds later. Returns the
        members it stopped and, among them, those it had to kill."""
        running = [member for member in self.members if member.alive]
        for member in running:
            member.send(signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed = [member for member in running if not member.wait(max(0.0, deadline - time.monotonic()))]
        for member in killed:
            member.kill()
        return running, killed

    def wait_formed(self, members: Sequence[DemoMember] | None = None, deadline: float = 30.0) -> float:
        """Wait until each of ``members`` serves its metrics and sees every other live member alive;
        returns the seconds it took."""
        members = list(members if members is not None else self.members)
        started = time.monotonic()
        end = started + deadline
        pending = list(members)
        while pending:
            member = pending[0]
            if not member.alive:
                raise DemoError(f"{member.route} exited at start:\n{_tail(member.log)}")
            if self._sees_everyone(member, members):
                pending.pop(0)
                continue
            if time.monotonic() > end:
                raise DemoError(f"{member.route} did not see every member within {deadline:.0f}s:\n{_tail(member.log)}")
            time.sleep(0.05)  # polling interval within the deadline
        return time.monotonic() - started

    def wait_until(self, condition: Callable[[], bool], deadline: float) -> bool:
        end = time.monotonic() + deadline
        while not condition():
            if time.monotonic() > end:
                return False
            time.sleep(0.01)  # polling interval within the deadline
        return True

    @staticmethod
    def _sees_everyone(member: DemoMember, members: Sequence[DemoMember]) -> bool:
        try:
            report = member.report()
        except StatusError:
            return False  # not serving yet
        alive = {m["route"] for m in report["members"] if m["state"] == "alive"}
        return alive >= {m.route for m in members if m is not member and m.alive}


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no output)"
