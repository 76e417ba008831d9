"""``replisession demo``: a cluster of the FastAPI example behind a sticky balancer, and a failover to watch.

It starts three members (``--members``) of ``examples/fastapi_app`` on loopback,
each configured only by ``REPLISESSION_*`` variables (a fresh secret key and
cluster secret, routes ``node1``..., one shared listen range and seed list, short
failure detection, the metrics endpoint on), puts a sticky balancer in front
(nginx when it is installed, else a built-in development balancer), and runs a
script: log in, fill a cart, SIGKILL the member that owns the session, and carry
on through another member with nothing lost and the cookie re-routed. Then it
keeps serving for a browser until Ctrl-C (``--no-wait``: it stops after the
script). Every process it started is stopped by its pid, on errors and on SIGTERM
too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .demo_cluster import METRICS_PATH, DemoCluster, DemoError, DemoMember, example_app_dir, port_is_free
from .demo_nginx import NginxBalancer
from .demo_scenario import run_scenario
from .devbalancer import BalancerThread, DevBalancer
from .status import StatusError

__all__ = ["register", "run"]

HOST = "127.0.0.1"


class _Terminated(Exception):
    """SIGTERM arrived: unwind, stopping everything started."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a cluster of the FastAPI example behind a sticky balancer and watch a failover",
        description=(
            "Start a cluster of the FastAPI example on loopback behind a sticky load balancer, kill the member "
            "that owns a session and carry on with nothing lost; then keep serving for a browser until Ctrl-C."
        ),
    )
    parser.add_argument("--port", type=int, default=8080, help="the balancer's port on 127.0.0.1 (default 8080)")
    parser.add_argument(
        "--balancer",
        choices=("auto", "nginx", "builtin"),
        default="auto",
        help="nginx, the built-in development balancer, or auto: nginx when installed (default)",
    )
    parser.add_argument("--members", type=int, default=3, help="how many members to start, 2-9 (default 3)")
    parser.add_argument("--no-wait", action="store_true", help="stop after the scripted scenario")
    parser.add_argument("--app-dir", help="a folder whose app.py defines `app` (default: examples/fastapi_app)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a background job
    # of a non-interactive shell, a CI runner): Python would then leave it ignored.
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _demo(args, _say)
    except DemoError as exc:
        print(f"replisession demo: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Terminated):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)


def _say(text: str) -> None:
    print(text, flush=True)


def _demo(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if not 2 <= args.members <= 9:
        raise DemoError(f"--members {args.members}: choose 2 to 9 members")
    if not 1 <= args.port <= 65535:
        raise DemoError(f"--port {args.port} is not a TCP port")
    missing = [name for name in ("uvicorn", "fastapi") if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoError(f"{' and '.join(missing)} not installed: pip install 'replisession[fastapi]'")
    app_dir = example_app_dir(args.app_dir)
    kind = args.balancer
    if kind == "auto":
        kind = "nginx" if shutil.which("nginx") else "builtin"
    elif kind == "nginx" and shutil.which("nginx") is None:
        raise DemoError("--balancer nginx: nginx is not installed (not found on PATH); use --balancer builtin")
    if not port_is_free(HOST, args.port):
        raise DemoError(f"port {args.port} on {HOST} is in use: choose another with --port")

    with tempfile.TemporaryDirectory(prefix="replisession-demo-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o711)  # nginx's worker (another user when run as root) reaches its folder inside
        cluster = DemoCluster(folder, app_dir, args.members)
        stop_balancer: Callable[[], None] = lambda: None  # noqa: E731
        try:
            say(f"replisession demo: {args.members} members of {app_dir} on loopback, logs in {folder}")
            cluster.start()
            for member in cluster.members:
                say(f"  {member.route}  pid {member.pid}  http://{HOST}:{member.http_port}/")
            took = cluster.wait_formed()
            say(
                f"Cluster formed in {took * 1000:.0f} ms: every member sees the other {args.members - 1} "
                f"(peer channel on {cluster.peer_range}, authenticated with a fresh cluster secret)."
            )
            stop_balancer = _start_balancer(kind, cluster, folder, args.port, say)
            say("")
            ok = run_scenario(cluster, args.port, say)
            if args.no_wait:
                return 0 if ok else 1
            _serve(cluster, args.port, say)
            return 0
        finally:
            # Stopping must not be cut short by a second Ctrl-C or SIGTERM.
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
            term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                stop_balancer()
                stopped, killed = cluster.stop()
                for member in killed:
                    say(
                        f"{member.route} (pid {member.pid}) did not leave within 10 s of SIGTERM and was killed; "
                        f"the end of its log:\n{member.log_tail()}"
                    )
                if stopped:
                    say("Stopped " + ", ".join(f"{m.route} (pid {m.pid})" for m in stopped) + ".")
            finally:
                signal.signal(signal.SIGINT, interrupt)
                signal.signal(signal.SIGTERM, term)


def _start_balancer(
    kind: str, cluster: DemoCluster, folder: Path, port: int, say: Callable[[str], None]
) -> Callable[[], None]:
    backends = [member.backend for member in cluster.members]
    if kind == "nginx":
        nginx = NginxBalancer(folder / "nginx", backends, (HOST, port))
        try:
            pid = nginx.start()
        except (RuntimeError, TimeoutError) as exc:
            nginx.stop()
            raise DemoError(f"nginx did not start: {exc}") from exc
        say(
            f"Balancer: nginx {nginx.version} (pid {pid}) at http://{HOST}:{port}/, sticky on the JSESSIONID route "
            f"(configuration: {nginx.config})."
        )

        def stop_nginx() -> None:
            nginx.stop()
            say(f"Stopped nginx (pid {pid}).")

        return stop_nginx
    thread = BalancerThread(DevBalancer(backends, on_event=lambda text: say(f"     [dev balancer] {text}")))
    try:
        thread.start(HOST, port)
    except OSError as exc:
        raise DemoError(f"the development balancer cannot listen on {HOST}:{port}: {exc}") from exc
    say(
        f"Balancer: the built-in development balancer (NOT for production: use nginx, HAProxy or Apache httpd) "
        f"at http://{HOST}:{port}/, sticky on the JSESSIONID route."
    )
    return thread.stop


def _wait_transferred(cluster: DemoCluster, member: DemoMember) -> None:
    """Until ``member`` received a state transfer from every other live member (or 10 s passed)."""
    others = sum(1 for m in cluster.members if m.alive and m is not member)

    def transferred() -> bool:
        try:
            return int(member.report()["counters"]["state_transfers_received"]) >= others
        except StatusError:
            return False

    cluster.wait_until(transferred, deadline=10.0)


def _sessions_held(member: DemoMember) -> int:
    sessions = member.report()["sessions"]
    return int(sessions["primary"]) + int(sessions["replica"])


def _serve(cluster: DemoCluster, port: int, say: Callable[[str], None]) -> None:
    """Bring the killed member back (a new incarnation: it fetches every session), then serve until Ctrl-C."""
    for member in [m for m in cluster.members if not m.alive]:
        member.start()
        took = cluster.wait_formed()
        _wait_transferred(cluster, member)
        say(
            f"Restarted {member.route} (pid {member.pid}), a new incarnation: it rejoined in {took * 1000:.0f} ms "
            f"and holds {_sessions_held(member)} session(s) again, received by state transfer."
        )
    first = cluster.members[0]
    say("")
    say(f"The cluster keeps serving: open http://{HOST}:{port}/ in a browser (Ctrl-C stops everything).")
    say(f"  Status of a member:  replisession status {HOST}:{first.http_port}")
    say(f"  Its metrics:         http://{HOST}:{first.http_port}{METRICS_PATH} (add /prometheus for Prometheus)")
    say("  Kill a member (kill -9 PID from the list above) and reload the page: the session stays.")
    reported: set[int] = set()
    idle = threading.Event()
    while True:
        for member in cluster.members:
            if member.process is not None and not member.alive and member.pid not in reported:
                reported.add(member.pid)
                say(f"{member.route} (pid {member.pid}) exited with status {member.process.returncode}.")
        idle.wait(1.0)  # nothing sets it: a wake-up every second to notice members that exited
