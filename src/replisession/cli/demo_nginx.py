"""nginx as the demo's sticky balancer: the process, run from a temporary folder.

Its configuration is exactly what ``replisession lb-config nginx`` prints for the
demo's members (one generator, so the demo shows the routing a deployment gets):
the route is what follows the last ``.`` of ``JSESSIONID``; a known route goes to
its member's upstream, where the other members are ``backup`` servers, so a dead
member's sessions fail over to a live one; a request without a route is balanced
round robin. Every path that file writes is relative, so ``nginx -p FOLDER`` keeps
the pid, logs and temporary files in the demo's folder and it runs without root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ._balancers import DEFAULT_APACHE_MODULES, Address, Settings, render_nginx
from ._balancers import Backend as Entry
from .devbalancer import Backend
from .lbconfig import DEFAULT_COOKIE, command_line

__all__ = ["NginxBalancer", "nginx_configuration"]


def nginx_configuration(members: Sequence[Backend], listen: tuple[str, int]) -> str:
    """The nginx.conf of ``replisession lb-config nginx`` for ``members`` behind ``listen``
    (its first lines name that command, so the file says how to make it again)."""
    entries = tuple(Entry(m.route, Address(m.host, m.port)) for m in members)
    address = Address(*listen)
    command = command_line("nginx", entries, address, DEFAULT_COOKIE, DEFAULT_APACHE_MODULES)
    return render_nginx(Settings(backends=entries, listen=address, cookie=DEFAULT_COOKIE, command=command))


class NginxBalancer:
    """An nginx master process in its own session (so it and its workers stop together by its pid)."""

    def __init__(self, folder: Path, members: Sequence[Backend], listen: tuple[str, int]) -> None:
        executable = shutil.which("nginx")
        if executable is None:
            raise FileNotFoundError("nginx is not installed (not found on PATH)")
        self.executable = executable
        self.folder = folder
        self.folder.mkdir(mode=0o755, exist_ok=True)  # nginx's worker runs as another user when we are root
        self.config = folder / "nginx.conf"
        self.config.write_text(nginx_configuration(members, listen))
        self.log = folder / "nginx.out"
        self.listen = listen
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def version(self) -> str:
        result = subprocess.run([self.executable, "-v"], capture_output=True, text=True, timeout=10, check=False)
        return (result.stderr or result.stdout).strip().removeprefix("nginx version: ").removeprefix("nginx/")

    def start(self, deadline: float = 10.0) -> int:
        """Start nginx and wait until it accepts connections; returns its pid."""
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [self.executable, "-p", str(self.folder), "-c", str(self.config), "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with status {self.process.returncode}: {self.tail()}")
            try:
                with socket.create_connection(self.listen, timeout=0.2):
                    return self.process.pid
            except OSError:
                if time.monotonic() > end:
                    raise TimeoutError(f"nginx did not listen on {Address(*self.listen)} within {deadline}s") from None
                time.sleep(0.05)  # polling interval within the deadline

    def tail(self) -> str:
        text = ""
        for path in (self.log, self.folder / "error.log"):
            if path.exists():
                text += path.read_text(errors="replace")[-1500:]
        return text.strip()

    def stop(self) -> None:
        """Fast shutdown of the master and its workers (their process group), then reap the master."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            process.wait(timeout=10)
