"""nginx, HAProxy and Apache httpd as real processes on loopback, for the end-to-end tests.

Each runs in the foreground (not as a daemon), as a child in its own session, from
the configuration ``replisession lb-config`` prints, with every file it writes (pid,
logs, temporary and runtime files) in a folder of the test's own. It is stopped by
its pid, and what is left of its process group (its workers) is killed by that pid.
A balancer that is not installed skips the test, saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .cluster_helpers import Response
from .servers import BIN, ROOT, free_port, request, wait_until_serving

#: lb-config's balancer name -> the binary Debian installs.
BINARIES = {"nginx": "nginx", "haproxy": "haproxy", "apache": "apache2"}
KINDS = tuple(BINARIES)


def balancer_binary(kind: str) -> str:
    """The balancer's binary; skips the test when it is not installed."""
    name = BINARIES[kind]
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.skip(f"{name} is not installed (./scripts/test installs it when run as root with apt-get)")
    return found


def lb_config(kind: str, backends: list[tuple[str, str, int]], listen_port: int, *extra: str) -> str:
    """What ``replisession lb-config`` prints for these (route, host, port) entries."""
    command = [str(BIN / "replisession"), "lb-config", kind, "--listen", f"127.0.0.1:{listen_port}", *extra]
    for route, host, port in backends:
        command += ["--member", f"{route}={host}:{port}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_command(kind: str, binary: str, config: Path) -> list[str]:
    """The balancer's own configuration check (it also opens the files the config names)."""
    folder = str(config.parent)
    return {
        "nginx": [binary, "-t", "-p", folder, "-c", str(config)],
        "haproxy": [binary, "-c", "-f", str(config)],
        "apache": [binary, "-t", "-d", folder, "-f", str(config)],
    }[kind]


def _run_command(kind: str, binary: str, config: Path) -> list[str]:
    folder = str(config.parent)
    return {
        "nginx": [binary, "-p", folder, "-c", str(config), "-g", "daemon off;"],
        "haproxy": [binary, "-f", str(config), "-db"],
        "apache": [binary, "-d", folder, "-f", str(config), "-DFOREGROUND"],
    }[kind]


class Balancer:
    """One balancer process serving on 127.0.0.1 from a configuration file in ``folder``.

    ``configuration`` makes the file's text for the port the balancer listens on.
    """

    def __init__(self, kind: str, configuration: Callable[[int], str], folder: Path) -> None:
        binary = balancer_binary(kind)
        self.kind = kind
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True)
        self.config = folder / {"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "apache": "httpd.conf"}[kind]
        self.config.write_text(configuration(self.port))
        self.log = folder / "output.log"
        self._stopped = False
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                _run_command(kind, binary, self.config),
                cwd=folder,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its pid is its group's id: the workers go with it
            )
        try:
            wait_until_serving(self.port, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def __repr__(self) -> str:
        return f"<{self.kind} pid={self.process.pid} port={self.port}>"

    def call(self, method: str, path: str, cookie: str | None = None) -> Response:
        status, headers, body = request(self.port, method, path, cookie)
        return Response(status, headers, body)

    def logs(self) -> str:
        parts = [
            f"--- {self!r} {name}\n{(self.folder / name).read_text(errors='replace')[-3000:]}"
            for name in ("output.log", "error.log")
            if (self.folder / name).exists()
        ]
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM (each of the three stops at once on it), then SIGKILL to what is left of its group.

        The leader is waited for without being reaped, so its pid still names the group
        when the group is killed; only then is it reaped.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.process.returncode is not None:
            return  # exited and reaped already (it failed to start): its pid may be reused
        self.process.send_signal(signal.SIGTERM)
        if not _exited(self.process.pid, deadline=10.0):
            self.process.kill()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # workers that outlived their master
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def _exited(pid: int, deadline: float) -> bool:
    """Wait up to ``deadline`` seconds for the child to exit, leaving it unreaped."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.02)  # polling interval inside a deadline
    return False
