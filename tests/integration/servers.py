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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from replisession.cli import demo_cluster

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    """A free port outside the kernel's range for outgoing connections (see candidate_ports)."""
    return demo_cluster.free_port(host)


def eventually(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)  # polling inside a deadline


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


def kill_group(process: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    """SIGKILL to the process group that ``process`` leads (it was started in a session of its
    own), and return only once nothing of the group runs any more.

    The leader is reaped. Its children (a server's workers), orphaned, are reaped by
    whoever adopts them, maybe never; so they are watched in /proc until every THREAD of
    theirs has exited. A process whose main thread shows ``Z`` is not gone yet: its other
    threads may still be exiting (tearing down the memory they share takes milliseconds),
    and they hold its file table, so its listening socket. Until the last one exits, the
    kernel completes handshakes on that socket, then resets them: a request sent "after
    the death" in that window is accepted and dropped without an answer, which a balancer
    reports as a 502.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is gone already
    process.wait(timeout=deadline)  # the leader: waitpid returns once all its threads have exited
    end = time.monotonic() + deadline
    while _runs_in_group(process.pid):
        if time.monotonic() > end:
            raise TimeoutError(f"pid {process.pid}: a process of its group still runs {deadline}s after SIGKILL")
        time.sleep(0.01)  # polling interval inside a deadline


def _runs_in_group(group: int) -> bool:
    """Whether a thread of a process of this group has not exited yet (is neither zombie nor dead), from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry / "stat")
        if fields is None or int(fields[2]) != group:
            continue  # gone meanwhile, or another group's
        try:
            tasks = list((entry / "task").iterdir())
        except OSError:
            continue  # gone meanwhile
        for task in tasks:
            state = _stat_fields(task / "stat")
            if state is not None and state[0] not in ("Z", "X"):
                return True
    return False


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields after "pid (comm)" of a /proc stat file (state, ppid, pgrp, ...), or None once it is gone.

    comm may hold spaces or parentheses, so the fields start after the last ')'.
    """
    try:
        text = stat.read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


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
