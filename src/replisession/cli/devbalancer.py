"""A development load balancer for ``replisession demo``. NOT FOR PRODUCTION.

It exists so the demo runs on a machine without nginx: a small asyncio HTTP/1.1
reverse proxy that does what a Tomcat-style sticky balancer does and nothing more.
A request whose ``JSESSIONID`` cookie ends in ``.<route>`` goes to the member with
that route; a new client goes to the members in turn (round robin); a member that
refuses the connection is skipped for the next one, which is how a session fails
over. Every client connection carries one request (``Connection: close``); request
bodies must have a ``Content-Length``; there is no TLS, no websocket, no tuning and
no protection against abusive clients beyond size and time limits. Use nginx,
HAProxy or Apache httpd in front of a real deployment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Backend", "BalancerThread", "DevBalancer", "route_of"]

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Headers that describe one hop's connection, not the message: never forwarded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)
VIA = "1.1 replisession-devbalancer"
_REASONS = {400: "Bad Request", 411: "Length Required", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}


@dataclass(frozen=True, slots=True)
class Backend:
    """One cluster member as the balancer sees it: its route and HTTP address."""

    route: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.route} ({self.host}:{self.port})"


class _Unreachable(Exception):
    """The backend could not take the request; another may."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def route_of(cookie_headers: Sequence[str], cookie_name: str = "JSESSIONID") -> list[str]:
    """The routes named by the session cookies of a request, in order (what follows the last '.')."""
    routes = []
    for header in cookie_headers:
        for pair in header.split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name == cookie_name and "." in value:
                routes.append(value.rpartition(".")[2])
    return routes


class DevBalancer:
    """Sticky on the cookie route, round robin for new clients, failover on connection errors."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        cookie_name: str = "JSESSIONID",
        connect_timeout: float = 2.0,
        timeout: float = 60.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = list(backends)
        self.cookie_name = cookie_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.on_event = on_event
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen (``port`` 0: any free port); returns the port. A busy port raises OSError."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def order(self, routes: Sequence[str]) -> list[Backend]:
        """The backends to try for a request whose cookies name ``routes``: the sticky one
        first, then the others; without a known route, round robin."""
        by_route = {backend.route: backend for backend in self.backends}
        sticky = next((by_route[route] for route in routes if route in by_route), None)
        if sticky is not None:
            start = self.backends.index(sticky)
        else:
            start = next(self._turn) % len(self.backends)
        return self.backends[start:] + self.backends[:start]

    # -- one client connection --------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, target, headers, body = await asyncio.wait_for(self._read_request(reader, writer), self.timeout)
            except _BadRequest as exc:
                await _answer(writer, exc.status, str(exc))
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return  # the client went away or stalled: nothing to answer
            routes = route_of([value for name, value in headers if name.lower() == "cookie"], self.cookie_name)
            peer = writer.get_extra_info("peername")
            client = peer[0] if isinstance(peer, tuple) else "unknown"
            for attempt, backend in enumerate(self.order(routes)):
                try:
                    await self._forward(backend, method, target, headers, body, client, writer)
                except _Unreachable as exc:
                    self._note(f"{backend} {exc}; trying the next member")
                    continue
                if attempt and routes:
                    self._note(f"{method} {target}: the session's member was unreachable, {backend.route} served it")
                return
            await _answer(writer, 502, "502 Bad Gateway: no cluster member could be reached.\n")
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client or the member hung up mid-response: nothing more can be said
        finally:
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, str, list[tuple[str, str]], bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "431 Request Header Fields Too Large\n") from None
        lines = head.decode("latin-1").split("\r\n")[:-2]
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "400 Bad Request: not an HTTP/1.x request line.\n")
        method, target, _ = parts
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "400 Bad Request: malformed header line.\n")
            headers.append((name, value.strip()))
        names = {name.lower(): value for name, value in headers}
        if "transfer-encoding" in names:
            raise _BadRequest(411, "411 Length Required: the development balancer needs a Content-Length.\n")
        length_text = names.get("content-length", "0")
        if not length_text.isdigit() or int(length_text) > MAX_BODY:
            raise _BadRequest(400, "400 Bad Request: bad or too large Content-Length.\n")
        if names.get("expect", "").lower() == "100-continue" and int(length_text):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body is read here, then sent on whole
        body = await reader.readexactly(int(length_text))
        return method, target, headers, body

    async def _forward(
        self,
        backend: Backend,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        client: str,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(backend.host, backend.port, limit=MAX_HEAD), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise _Unreachable(f"cannot be reached ({exc.__class__.__name__})") from exc
        try:
            forwarded = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() != "x-forwarded-for"]
            forwarded += [("X-Forwarded-For", client), ("Via", VIA), ("Connection", "close")]
            head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in forwarded) + "\r\n"
            try:
                up_writer.write(head.encode("latin-1") + body)
                await up_writer.drain()
                status_head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                # Nothing came back: the member died with the request. Only a request that
                # may be repeated is sent on; others get a 502 (the write may have happened).
                if method in IDEMPOTENT:
                    raise _Unreachable(f"closed the connection ({exc.__class__.__name__})") from exc
                await _answer(writer, 502, "502 Bad Gateway: the member closed the connection.\n")
                return
            writer.write(_rewrite_response_head(status_head))
            while chunk := await asyncio.wait_for(up_reader.read(65536), self.timeout):
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()

    def _note(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)


def _rewrite_response_head(head: bytes) -> bytes:
    lines = head.decode("latin-1").split("\r\n")[:-2]
    kept = [lines[0]] + [line for line in lines[1:] if line.partition(":")[0].strip().lower() not in HOP_BY_HOP]
    return ("\r\n".join([*kept, f"Via: {VIA}", "Connection: close"]) + "\r\n\r\n").encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    writer.write(
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nVia: {VIA}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + body
    )
    await writer.drain()


class BalancerThread:
    """Runs a :class:`DevBalancer` on an event loop of its own thread (the demo's main thread
    runs the scenario and waits for Ctrl-C)."""

    def __init__(self, balancer: DevBalancer) -> None:
        self.balancer = balancer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replisession-devbalancer", daemon=True)

    def start(self, host: str, port: int, timeout: float = 10.0) -> int:
        """Listen and serve; returns the port. A busy port raises OSError here."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.balancer.start(host, port), self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self.balancer.close(), self._loop).result(5.0)
            except (concurrent.futures.TimeoutError, OSError):
                pass  # stopping anyway
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        if not self._loop.is_running():
            self._loop.close()
