"""Cluster members for the replication benchmark, as processes on 127.0.0.1.

Two kinds:

* :class:`HttpMember`: ``uvicorn apps:asgi_cluster`` (one process, no workers),
  configured only by ``REPLISESSION_*`` variables, as a deployment would be. Used
  where requests matter: overhead, failover, lost writes, a joiner serving requests.
* :class:`Worker`: this module run as a process (``replication.py _worker ...``): a
  :class:`~replisession.node.Node` and nothing else, driven by one-line commands on
  its stdin and answering JSON lines on its stdout. Used where HTTP would only add
  noise: replication lag, filling a store with many sessions, memory per session.

Every process is started in a session of its own and stopped by its pid (SIGTERM,
then SIGKILL of its group), also when the benchmark is interrupted; the callers
register :meth:`stop` on an ``ExitStack``. Waits poll with a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _harness import HOST, clean_env, free_port, http_request, rss_bytes, stop, uvicorn_command, wait_for_port

__all__ = [
    "CLUSTER_SECRET",
    "HttpMember",
    "Worker",
    "large_session_values",
    "seeds",
    "session_values",
    "wait_for_members",
    "wait_until",
    "worker_main",
]

CLUSTER_SECRET = "replisession-benchmark-cluster-secret"  # fixed; never a real secret
SCRIPT = Path(__file__).resolve().with_name("replication.py")


def seeds(ports: Sequence[int]) -> str:
    return ",".join(f"{HOST}:{port}" for port in ports)


def wait_until(condition: Callable[[], bool], deadline: float, what: str, interval: float = 0.01) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Raises after ``deadline`` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > deadline:
            raise TimeoutError(f"{what}: not within {deadline:g}s")
        time.sleep(interval)  # polling interval inside a deadline
    return time.monotonic() - start


# -- uvicorn members ---------------------------------------------------------------------------


class HttpMember:
    """One ``apps:asgi_cluster`` process: an HTTP port and a peer-channel port."""

    def __init__(
        self,
        route: str,
        *,
        cluster_ports: Sequence[int] | None = None,
        peer_port: int | None = None,
        mode: str = "sync",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``cluster_ports``: every member's peer port (this one's included); None: a single member.
        ``env``: more ``REPLISESSION_*`` settings (``REPLISESSION_MANAGER``, for one)."""
        self.route = route
        self.http_port = free_port()
        self.peer_port = peer_port or free_port()
        variables = {"REPLISESSION_ROUTE": route, "REPLISESSION_SEND_MODE": mode}
        if cluster_ports is not None:  # with no seed at all the process stays a single member
            variables["REPLISESSION_LISTEN"] = f"{HOST}:{self.peer_port}"
            variables["REPLISESSION_MEMBERS"] = seeds(cluster_ports)
            variables["REPLISESSION_CLUSTER_SECRET"] = CLUSTER_SECRET
        variables.update(env or {})
        self._tmp = tempfile.TemporaryDirectory(prefix="replisession-bench-")
        self.log = Path(self._tmp.name) / f"{route}.log"
        with self.log.open("wb") as log_file:
            # A session of its own: Ctrl-C reaches only us; stop() ends it by its pid.
            self.process = subprocess.Popen(
                uvicorn_command("asgi_cluster", self.http_port),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=clean_env(**variables),
                start_new_session=True,
            )
        self.pid = self.process.pid

    def wait_serving(self) -> None:
        try:
            wait_for_port(self.process, self.http_port, self.log)
        except Exception as exc:
            exc.add_note(self.log_tail())
            raise

    def cluster(self) -> dict[str, Any]:
        status, body, _ = http_request(self.http_port, "GET", "/cluster", timeout=10)
        if status != 200:
            raise RuntimeError(f"{self.route}: GET /cluster answered {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    def kill(self) -> float:
        """SIGKILL, by pid; the moment it was sent (``time.monotonic()``)."""
        self.process.send_signal(signal.SIGKILL)
        sent = time.monotonic()
        self.process.wait(10)
        return sent

    def stop(self) -> None:
        stop(self.process)
        self._tmp.cleanup()

    def log_tail(self) -> str:
        try:
            return f"{self.route} log:\n{self.log.read_text(errors='replace')[-3000:]}"
        except OSError:
            return f"{self.route}: no log"


def wait_for_members(members: Sequence[HttpMember], deadline: float = 30.0) -> float:
    """Until every member lists every other one; the seconds it took."""
    start = time.monotonic()
    try:
        for member in members:
            others = sorted(m.route for m in members if m is not member)
            what = f"{member.route} sees {others}"
            wait_until(lambda m=member, o=others: m.cluster()["members"] == o, deadline, what)
    except TimeoutError as exc:
        for member in members:
            with contextlib.suppress(Exception):
                seen = member.cluster()
                exc.add_note(f"{member.route} lists {seen['members']}; events {seen['events']}")
            exc.add_note(member.log_tail())
        raise
    return time.monotonic() - start


# -- worker processes ------------------------------------------------------------------------


class Worker:
    """The benchmark's handle on a worker process: commands in, JSON events out."""

    def __init__(
        self,
        route: str,
        *,
        cluster_ports: Sequence[int] | None = None,
        peer_port: int | None = None,
        mode: str = "sync",
        options: Sequence[str] = (),
    ) -> None:
        """``cluster_ports``: every member's peer port; None: alone (but replicating once others join)."""
        self.route = route
        self.peer_port = peer_port or free_port()
        ports = cluster_ports if cluster_ports is not None else [self.peer_port]
        command = [sys.executable, str(SCRIPT), "_worker", "--route", route, "--port", str(self.peer_port)]
        command += ["--mode", mode, "--seeds", seeds(ports), *options]
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=clean_env(),
            start_new_session=True,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        try:
            self.ready = self.wait_for("ready", 60)
        except BaseException:
            self.stop()  # not yet on the caller's ExitStack
            raise

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def ask(self, line: str, event: str, deadline: float = 120.0) -> dict[str, Any]:
        self.command(line)
        return self.wait_for(event, deadline)

    def wait_for(self, event: str, deadline: float = 60.0) -> dict[str, Any]:
        """The next event of this kind not yet consumed."""
        end = time.monotonic() + deadline
        while True:
            for index, found in enumerate(self.events):
                if found["event"] == event:
                    return self.events.pop(index)
            if time.monotonic() > end:
                raise TimeoutError(f"worker {self.route}: no {event!r} within {deadline:g}s\n{self.stderr_tail()}")
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.route} exited with {self.process.returncode}\n{self.stderr_tail()}")
            self._read(min(0.2, max(0.0, end - time.monotonic())))

    def _read(self, timeout: float) -> None:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if selector.select(timeout):
                self._buffer += self.process.stdout.read() or b""
        *lines, self._buffer = self._buffer.split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line)

    def kill(self) -> float:
        """SIGKILL, by pid; the moment it was sent (``time.monotonic()``)."""
        self.process.send_signal(signal.SIGKILL)
        sent = time.monotonic()
        self.process.wait(10)
        return sent

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.command("quit")
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                stop(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


# -- the worker process itself -----------------------------------------------------------------

_ATTRIBUTES = 5


def session_values(i: int) -> dict[str, Any]:
    """About five small attributes, as a typical login session holds."""
    return {"user": f"user-{i}", "cart": [1, 2, 3], "n": i, "theme": "dark", "seen": 1700000000.5 + i}


def large_session_values(i: int) -> dict[str, Any]:
    """The same five attributes with a cart of 27 items: about 1 KB encoded."""
    cart = [{"sku": f"sku-{j:05d}", "qty": j % 3 + 1, "price": 9.99 + j} for j in range(27)]
    return {**session_values(i), "cart": cart}


class _Out:
    """JSON lines on stdout from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def _memory(traced: bool) -> dict[str, int]:
    gc.collect()
    return {"traced": tracemalloc.get_traced_memory()[0] if traced else 0, "rss": rss_bytes(os.getpid())}


def _settle(traced: bool, deadline: float = 10.0) -> None:
    """Until memory stops changing: sends queued for the member loop still hold their messages."""
    end = time.monotonic() + deadline
    last = _memory(traced)["traced" if traced else "rss"]
    while time.monotonic() < end:
        time.sleep(0.2)  # let the member loop drain what the request thread queued
        now = _memory(traced)["traced" if traced else "rss"]
        if abs(now - last) <= 0.002 * max(last, 1):
            return
        last = now


def worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="replication.py _worker")
    parser.add_argument("--route", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seeds", default="")
    parser.add_argument("--mode", default="sync")
    parser.add_argument("--no-cluster", action="store_true", help="a plain single member (no replication at all)")
    parser.add_argument("--record", action="store_true", help="record when each value of 'n' is applied here")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--manager", choices=("delta", "backup"), default="delta")
    parser.add_argument("--backups", type=int, default=1, help="copies besides the primary (--manager backup)")
    parser.add_argument("--check-sends", action="store_true", help="fill: wait for every send and count failures")
    parser.add_argument(
        "--fill-window", type=int, default=0, help="fill: wait for the sends every N sessions (0: never)"
    )
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()

    # Imported here, in the worker process only.
    from apps import SECRET_KEY

    from replisession import ClusterConfig, ClusterListener, SessionListener
    from replisession.config import SessionConfig
    from replisession.node import Node
    from replisession.node.loop import wait_all
    from replisession.web.cookie import SessionCookieCodec

    out = _Out()
    applied: list[tuple[Any, int]] = []

    class Recorder(SessionListener):
        """When a replicated value of ``n`` became visible here (called on the member thread)."""

        def attribute_added(self, session: Any, key: str, value: Any) -> None:
            if key == "n":
                applied.append((value, time.monotonic_ns()))

        def attribute_replaced(self, session: Any, key: str, old: Any, value: Any) -> None:
            if key == "n":
                applied.append((value, time.monotonic_ns()))

    class Membership(ClusterListener):
        def member_joined(self, member: Any) -> None:
            out("joined", route=member.route, t=time.monotonic())

        def member_left(self, member: Any, reason: str) -> None:
            out("left", route=member.route, reason=reason, t=time.monotonic())

    class TransferLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("state transfer from") and "complete" in message:
                out("transfer_complete", t=time.monotonic(), message=message)
            elif message.startswith("state transfer to"):
                out("transfer_sent", t=time.monotonic(), message=message)
            elif message.startswith("rebalanced"):  # the BackupManager re-placed sessions
                out("rebalanced", t=time.monotonic(), message=message)

    replication_log = logging.getLogger("replisession.replication")
    replication_log.setLevel(logging.INFO)
    replication_log.addHandler(TransferLog())
    # Warnings and errors (failed sends, stopped streams) to stderr, which the benchmark shows on failure.
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    problems.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("replisession").addHandler(problems)

    session_config = SessionConfig.build(secret_key=SECRET_KEY, route=args.route)
    if args.no_cluster:
        cluster = ClusterConfig()
    else:
        members = ClusterConfig.from_env({"REPLISESSION_MEMBERS": args.seeds}).members
        cluster = ClusterConfig(
            route=args.route,
            listen_ports=(args.port, args.port),
            members=members,
            secret=CLUSTER_SECRET,
            send_mode=args.mode,
            manager=args.manager,
            backups=args.backups,
        )
    node = Node(
        session_config,
        listeners=[Recorder()] if args.record else [],
        cluster=cluster,
        cluster_listeners=[Membership()],
    )
    codec = SessionCookieCodec(session_config.secret_keys, args.route)
    out("ready", pid=os.getpid(), **_memory(args.tracemalloc))

    def fill(count: int, large: bool) -> None:
        start = time.perf_counter()
        base = len(node.store)
        values = large_session_values if large else session_values
        replicator = node.replicator
        window = args.fill_window if replicator is not None else 0
        checked = replicator is not None and (args.check_sends or window > 0)
        failures: list[str] = []

        def settle_sends() -> None:
            """Wait for the sends made since the last call, note every failure, collect again."""
            assert replicator is not None
            sends = replicator.pending()
            wait_all(sends, 120)
            for future in sends:
                if not future.done() or future.exception() is not None:
                    failures.append(repr(future.exception() if future.done() else "not done after 120 s"))
                    continue
                failures.extend(
                    f"{m.route}: {status.value} {detail}" for m, status, detail in future.result().failures()
                )
            replicator.begin()

        if checked:
            replicator.begin()  # collect every send's future, as a request does
        for i in range(base, base + count):
            session = node.new_session()
            session.update(values(i))
            node.release(session)
            if window and (i - base + 1) % window == 0:
                settle_sends()  # like requests that wait for their sends: the queues stay short
        if node.member is not None:
            # The member loop runs sends in order: once this one is done, every delta is.
            node.member.send("barrier", None).result(60)
        if checked:
            settle_sends()
            replicator.pending()
        out(
            "filled",
            n=count,
            sessions=len(node.store),
            seconds=time.perf_counter() - start,
            send_failures=len(failures) if checked else None,
            first_failures=failures[:5],
        )

    def writes(count: int, interval: float) -> None:
        """``count`` requests that each change one attribute of one session, like the middleware's."""
        replicator = node.replicator
        session_id: str | None = None
        sent: list[int] = []
        done: list[int] = []
        failures = 0
        for i in range(count):
            started = time.perf_counter()
            session = node.load(session_id) if session_id is not None else node.new_session()
            assert session is not None
            if replicator is not None:
                replicator.begin()  # what a request's start does: collect its sends
            session["n"] = i
            sent.append(time.monotonic_ns())
            node.release(session)
            session_id = session.id
            if replicator is not None:
                for future in replicator.pending():  # ack/sync: what the response waits for
                    if not future.result(10).ok:
                        failures += 1
            done.append(time.monotonic_ns())
            pause = interval - (time.perf_counter() - started)
            if pause > 0:
                time.sleep(pause)  # a steady rate of writes, not a burst
        out("writes", sent=sent, done=done, failures=failures)

    for line in sys.stdin:
        command, *rest = line.split()
        if command == "start":
            node.start()
            out("started", **_memory(args.tracemalloc))
        elif command == "fill":  # fill N [large]
            fill(int(rest[0]), rest[1:] == ["large"])
        elif command == "ids":  # ids PATH: every stored id, one a line, into a file (too many for a JSON line)
            ids = node.store.ids()
            Path(rest[0]).write_text("".join(f"{session_id}\n" for session_id in ids))
            out("ids", sessions=len(ids))
        elif command == "count":  # cheap enough to poll: no gc, no /proc
            out("count", sessions=len(node.store), dormant=node.store.dormant_count, t=time.monotonic())
        elif command == "writes":
            writes(int(rest[0]), float(rest[1]))
        elif command == "stats":
            if rest == ["settle"]:
                _settle(args.tracemalloc)
            manager = node.replicator.manager if node.replicator is not None else None
            member = node.member
            out(
                "stats",
                sessions=len(node.store),
                transfer_done=manager.transfer_done if manager is not None else None,
                members=sorted(m.route or "" for m in member.members()) if member is not None else [],
                **_memory(args.tracemalloc),
            )
        elif command == "applied":
            out("applied", items=list(applied))
            applied.clear()
        elif command == "cookie":  # a cookie for the newest session: the last one a transfer sends
            ids = node.store.ids()
            out("cookie", value=f"JSESSIONID={codec.encode(ids[-1])}", attributes=_ATTRIBUTES)
        elif command == "quit":
            break
    node.stop()
    return 0
