"""In-process benchmark: what the session machinery costs per request, without HTTP or a server.

Run by hand, never by pytest::

    .venv/bin/python benchmarks/inprocess_sessions.py [--requests 20000] [--repeat 5]
    .venv/bin/python benchmarks/inprocess_sessions.py --profile asgi_replisession

Calls each app of ``benchmarks/apps.py`` directly (ASGI: ``await app(scope,
receive, send)``; WSGI: ``app(environ, start_response)``) with the cookie of a
primed session, so the numbers are the framework and session cost alone, far
less noisy than the HTTP benchmark on a shared two-core machine. Prints
microseconds per request (best of ``--repeat``) and the overhead over the
framework's no-session baseline. ``--profile VARIANT`` runs cProfile over the
same loop and prints where the time goes, per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

import apps

# name -> (factory, framework baseline)
VARIANTS: dict[str, tuple[Callable[[], Any], str]] = {
    "asgi_plain": (apps.asgi_plain, "asgi_plain"),
    "asgi_starlette": (apps.asgi_starlette, "asgi_plain"),
    "asgi_replisession": (apps.asgi_replisession, "asgi_plain"),
    "flask_plain": (apps.flask_plain, "flask_plain"),
    "flask_cookie": (apps.flask_cookie, "flask_plain"),
    "flask_replisession": (apps.flask_replisession, "flask_plain"),
}

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hit",
    "raw_path": b"/hit",
    "root_path": "",
    "query_string": b"",
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8000),
}


class AsgiDriver:
    """Drives an ASGI app with one request at a time, like a server with one connection:
    on a loop of its own (``prime``, ``run``), or from a coroutine on a running loop
    (``prime_async``, ``requests``), where cluster members hosted on that loop answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self.headers: list[tuple[bytes, bytes]] = [(b"host", b"127.0.0.1:8000")]
        self.set_cookie: bytes | None = None

    async def _receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                raise RuntimeError(f"status {message['status']}")
            for key, value in message["headers"]:
                if key == b"set-cookie":
                    self.set_cookie = value

    async def requests(self, count: int) -> None:
        app, receive, send, headers = self.app, self._receive, self._send, self.headers
        for _ in range(count):
            await app({**_SCOPE, "headers": list(headers)}, receive, send)

    async def prime_async(self) -> None:
        """One request, whose session cookie every later request sends."""
        await self.requests(1)
        if self.set_cookie is not None:
            self.headers.append((b"cookie", self.set_cookie.split(b";", 1)[0]))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._own_loop is None:
            self._own_loop = asyncio.new_event_loop()
        return self._own_loop

    def prime(self) -> None:
        self.loop.run_until_complete(self.prime_async())

    def run(self, count: int) -> None:
        self.loop.run_until_complete(self.requests(count))

    def close(self) -> None:
        if self._own_loop is not None:
            self._own_loop.close()


class WsgiDriver:
    """Drives a WSGI app with one request at a time, like gunicorn's sync worker."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.environ = EnvironBuilder(path="/hit", base_url="http://127.0.0.1:8000/").get_environ()
        self.set_cookie: str | None = None

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"status {status}")
        for key, value in headers:
            if key.lower() == "set-cookie":
                self.set_cookie = value

    def _consume(self, body: Iterable[bytes]) -> None:
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    def prime(self) -> None:
        self.run(1)
        if self.set_cookie is not None:
            self.environ["HTTP_COOKIE"] = self.set_cookie.split(";", 1)[0]

    def run(self, count: int) -> None:
        app, environ, start_response, consume = self.app, self.environ, self._start_response, self._consume
        for _ in range(count):
            consume(app(dict(environ), start_response))  # a WSGI server hands each request a fresh environ

    def close(self) -> None:
        pass


def driver(name: str) -> AsgiDriver | WsgiDriver:
    factory, _ = VARIANTS[name]
    app = factory()
    made = AsgiDriver(app) if name.startswith("asgi") else WsgiDriver(app)
    made.prime()
    made.run(500)  # warm-up: caches, first-request paths
    return made


def time_variant(name: str, requests: int, repeat: int) -> float:
    """Best microseconds per request over ``repeat`` loops of ``requests``."""
    made = driver(name)
    try:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            made.run(requests)
            best = min(best, (time.perf_counter() - start) / requests * 1e6)
        return best
    finally:
        made.close()


def profile_variant(name: str, requests: int, top: int) -> None:
    made = driver(name)
    try:
        profiler = cProfile.Profile()
        profiler.enable()
        made.run(requests)
        profiler.disable()
    finally:
        made.close()
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
        stats.print_stats(top)
        print(f"\n== {name}: top {top} by {sort}, {requests} requests (times include cProfile's overhead)")
        print("   per request:  tottime_us  cumtime_us   calls  function")
        for func, (_cc, calls, tottime, cumtime, _callers) in sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda item: item[1][2 if sort == "tottime" else 3],
            reverse=True,
        )[:top]:
            file, line, function = func
            print(
                f"   {tottime / requests * 1e6:>23.2f}  {cumtime / requests * 1e6:>10.2f}  "
                f"{calls / requests:>6.1f}  {function} ({file}:{line})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per timed loop (20000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed loops per variant; the best counts (5)")
    parser.add_argument("--profile", choices=list(VARIANTS), help="profile this variant instead of timing all")
    parser.add_argument("--top", type=int, default=25, help="functions to list when profiling (25)")
    args = parser.parse_args(argv)
    if args.profile:
        profile_variant(args.profile, args.requests, args.top)
        return 0

    results = {name: time_variant(name, args.requests, args.repeat) for name in VARIANTS}
    print(f"\n{args.requests} requests x {args.repeat} loops per variant, best loop, one request at a time\n")
    print(f"{'variant':<20}  {'us/request':>10}  {'session cost us':>15}  {'requests/s':>10}")
    for name, micros in results.items():
        baseline = VARIANTS[name][1]
        cost = "-" if name == baseline else f"{micros - results[baseline]:.1f}"
        print(f"{name:<20}  {micros:>10.1f}  {cost:>15}  {1e6 / micros:>10,.0f}")
    print(
        "\nsession cost: microseconds over the same framework with no session work "
        "(asgi_plain: no middleware; flask_plain: a session interface that loads and saves nothing)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
