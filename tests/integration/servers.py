"""Real server processes on loopback for integration tests: started, polled with a
deadline (never a bare sleep), and always stopped by their pid."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_serving(
    port: int, process: subprocess.Popen[bytes], log: Path, deadline: float = 20.0, host: str = "127.0.0.1"
) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling interval inside a deadline
    raise TimeoutError(f"nothing listened on {host}:{port} within {deadline}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def serving(command: list[str], port: int, env: Mapping[str, str], cwd: Path = ROOT) -> Iterator[int]:
    full_env = {**os.environ, **env}
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=output, stderr=subprocess.STDOUT)
            try:
                wait_until_serving(port, process, log)
                yield process.pid
            finally:
                stop(process)


def request(
    port: int, method: str, path: str, cookie: str | None = None, host: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Cookie": f"JSESSIONID={cookie}"} if cookie else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()
