"""``replisession demo`` as a user runs it: a real cluster behind a real balancer, a member
SIGKILLed, nothing lost, the route rewritten, and every process it started gone afterwards."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .servers import BIN, free_port, request

pytestmark = pytest.mark.integration

PIDS = re.compile(r"\bpid (\d+)\b")
ROUTE_CHANGE = re.compile(r"the cookie's route changed (node\d) -> (node\d) on the first response after the kill")


@contextmanager
def demo(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """The demo as a process; whatever it printed as a pid is killed at the end if it still runs
    (the demo's own job: this only keeps a failing test from leaving members behind)."""
    process = subprocess.Popen(
        [str(BIN / "replisession"), "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # As a background job of a non-interactive shell starts it (SIGINT ignored): the
        # demo must still stop on Ctrl-C. This is how CI once saw it not stop at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    process.printed = []  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        for pid in {int(p) for line in process.printed for p in PIDS.findall(line)}:  # type: ignore[attr-defined]
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def finish(process: subprocess.Popen[str], timeout: float = 50.0) -> str:
    output, _ = process.communicate(timeout=timeout)
    process.printed.extend(output.splitlines())  # type: ignore[attr-defined]
    return output


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def check_scenario(output: str) -> list[int]:
    """Nothing lost, the route changed to the member that served; returns the pids printed."""
    assert "Result: nothing lost." in output, output
    change = ROUTE_CHANGE.search(output)
    assert change is not None, output
    dead, new = change.groups()
    assert dead != new
    assert re.search(rf"Set-Cookie: JSESSIONID=…\S+\.{new} \(route {new}\)", output), output
    assert re.search(rf"4\. kill -9 {dead} \(pid \d+\)", output), output
    assert re.search(rf"6\. add a cup to the cart\s+POST /cart\?item=cup\s+200 from {new} ", output), output
    assert f"INFO replisession.failover: failover: a session routed to '{dead}' is now served by '{new}'" in output
    pids = [int(pid) for pid in PIDS.findall(output)]
    assert len(pids) >= 3, output
    return pids


def test_the_demo_with_the_builtin_balancer_loses_nothing_and_stops_everything() -> None:
    with demo("--no-wait", "--balancer", "builtin", "--port", str(free_port())) as process:
        output = finish(process)
        assert process.returncode == 0, output
    pids = check_scenario(output)
    assert "the built-in development balancer (NOT for production" in output
    assert not [pid for pid in pids if alive(pid)], output
    assert re.search(r"^Stopped node\d \(pid \d+\), node\d \(pid \d+\)\.$", output, re.MULTILINE), output


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_demo_behind_nginx_loses_nothing_and_stops_everything() -> None:
    with demo("--no-wait", "--balancer", "nginx", "--port", str(free_port())) as process:
        output = finish(process)
        assert process.returncode == 0, output
    pids = check_scenario(output)
    nginx = re.search(r"Balancer: nginx \S+ \(pid (\d+)\)", output)
    assert nginx is not None, output
    assert f"Stopped nginx (pid {nginx.group(1)})." in output
    assert int(nginx.group(1)) in pids
    assert not [pid for pid in pids if alive(pid)], output


def test_the_demo_serves_until_ctrl_c_then_stops_everything() -> None:
    port = free_port()
    with demo("--balancer", "builtin", "--port", str(port)) as process:
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in process.stdout or ():
                lines.put(line)
            lines.put(None)  # the end of the output: the demo exited

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 45
        while not any("keeps serving" in line for line in process.printed):  # type: ignore[attr-defined]
            assert process.poll() is None, "\n".join(process.printed)  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "\n".join(process.printed)  # type: ignore[attr-defined]
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is not None:
                process.printed.append(line)  # type: ignore[attr-defined]
        status, _, body = request(port, "GET", "/api/state")
        assert status == 200
        assert b'"route":"node' in body
        process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            while not lines.empty():
                process.printed.append(lines.get() or "")  # type: ignore[attr-defined]
            raise AssertionError("the demo did not stop within 30 s:\n" + "".join(process.printed)) from None  # type: ignore[attr-defined]
        assert process.returncode == 0
        while (line := lines.get(timeout=10)) is not None:
            process.printed.append(line)  # type: ignore[attr-defined]
        reader.join(10)
    output = "".join(process.printed)  # type: ignore[attr-defined]
    pids = check_scenario(output)
    assert re.search(
        r"Restarted (node\d) \(pid \d+\), a new incarnation: it rejoined in \d+ ms and holds 1 session", output
    )
    assert not [pid for pid in pids if alive(pid)], output
    stopped = re.search(r"^Stopped (.*)\.$", output, re.MULTILINE)
    assert stopped is not None, output
    assert stopped.group(1).count("pid") == 3, output
    assert "was killed" not in output, output  # every member left gracefully on SIGTERM


def test_the_demo_refuses_what_it_cannot_do_before_starting_anything() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with demo("--no-wait", "--port", str(port)) as process:
            output = finish(process)
        assert (process.returncode, output) == (
            1,
            f"replisession demo: port {port} on 127.0.0.1 is in use: choose another with --port\n",
        )
    with demo("--members", "1") as process:
        assert finish(process) == "replisession demo: --members 1: choose 2 to 9 members\n"
    with demo("--app-dir", "/nonexistent/app") as process:
        assert finish(process).startswith("replisession demo: --app-dir /nonexistent/app: there is no app.py in ")
    without_nginx = {**os.environ, "PATH": str(BIN)}
    if shutil.which("nginx", path=without_nginx["PATH"]) is None:
        with demo("--balancer", "nginx", env=without_nginx) as process:
            assert finish(process) == (
                "replisession demo: --balancer nginx: nginx is not installed (not found on PATH); "
                "use --balancer builtin\n"
            )
