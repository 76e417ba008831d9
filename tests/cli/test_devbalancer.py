"""The demo's development balancer over real sockets on loopback: sticky on the cookie route,
round robin for new clients, failover on connection errors, and HTTP/1.1 relayed faithfully."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from replisession.cli.devbalancer import VIA, Backend, BalancerThread, DevBalancer, route_of

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


@dataclass
class Shop:
    """Backends answering JSON about what they received, with a cookie naming their route."""

    servers: list[asyncio.Server] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def member(self, route: str, handler: Handler | None = None) -> Backend:
        server = await asyncio.start_server(handler or self._answer(route), "127.0.0.1", 0)
        self.servers.append(server)
        return Backend(route, "127.0.0.1", server.sockets[0].getsockname()[1])

    def _answer(self, route: str) -> Handler:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = [tuple(part.strip() for part in line.split(":", 1)) for line in head[1:] if line]
            length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
            body = await reader.readexactly(length)
            seen = {"route": route, "request": head[0], "headers": headers, "body": body.decode()}
            self.seen.append(seen)
            data = json.dumps(seen).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                + f"Content-Length: {len(data)}\r\nSet-Cookie: JSESSIONID=abc.{route}; Path=/\r\n\r\n".encode()
                + data
            )
            await writer.drain()
            writer.close()

        return answer

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[Shop]:
    shop = Shop()
    yield shop
    await shop.close()


@pytest_asyncio.fixture
async def balancers() -> AsyncIterator[Callable[..., Awaitable[tuple[DevBalancer, int]]]]:
    started: list[DevBalancer] = []

    async def start(backends: list[Backend], **options: Any) -> tuple[DevBalancer, int]:
        balancer = DevBalancer(backends, **options)
        port = await balancer.start("127.0.0.1", 0)
        started.append(balancer)
        return balancer, port

    yield start
    for balancer in started:
        await balancer.close()


async def exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # the balancer closes after one response
    writer.close()
    return data


async def get(port: int, path: str = "/", cookie: str | None = None, method: str = "GET", body: bytes = b"") -> Reply:
    lines = [f"{method} {path} HTTP/1.1", "Host: shop.test", "Connection: keep-alive"]
    if cookie is not None:
        lines.append(f"Cookie: {cookie}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return Reply.parse(await exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body))


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Reply:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        return cls(int(lines[0].split(" ")[1]), headers, body)

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def route(self) -> str:
        return str(json.loads(self.body)["route"])


def test_route_of_reads_the_route_after_the_last_dot_of_the_session_cookie() -> None:
    assert route_of(["a=1; JSESSIONID=abc.def.node2; b=2"]) == ["node2"]
    assert route_of(["JSESSIONID=noroute", "JSESSIONID=x.node1"]) == ["node1"]
    assert route_of(["SESSION=x.node1"]) == []
    assert route_of(["SESSION=x.node1"], cookie_name="SESSION") == ["node1"]


@pytest.mark.asyncio
async def test_new_clients_go_round_robin_and_a_route_sticks(shop: Shop, balancers: Any) -> None:
    backends = [await shop.member(route) for route in ("node1", "node2", "node3")]
    _, port = await balancers(backends)
    assert [(await get(port)).route for _ in range(4)] == ["node1", "node2", "node3", "node1"]
    for _ in range(3):
        assert (await get(port, cookie="JSESSIONID=abc.node3")).route == "node3"
    assert (await get(port, cookie="theme=dark; JSESSIONID=abc.node2")).route == "node2"
    # An unknown route or none at all: round robin goes on where it was.
    assert (await get(port, cookie="JSESSIONID=abc.node9")).route == "node2"
    assert (await get(port, cookie="JSESSIONID=abc")).route == "node3"


@pytest.mark.asyncio
async def test_a_dead_member_s_sessions_fail_over_to_a_live_one(shop: Shop, balancers: Any) -> None:
    notes: list[str] = []
    dead = Backend("node1", "127.0.0.1", closed_port())
    backends = [dead, await shop.member("node2"), await shop.member("node3")]
    _, port = await balancers(backends, on_event=notes.append)
    reply = await get(port, "/cart", cookie="JSESSIONID=abc.node1", method="POST", body=b"item=book")
    assert reply.status == 200
    assert reply.route == "node2"
    assert reply.header("set-cookie") == ["JSESSIONID=abc.node2; Path=/"]
    assert notes == [
        f"node1 (127.0.0.1:{dead.port}) cannot be reached (ConnectionRefusedError); trying the next member",
        "POST /cart: the session's member was unreachable, node2 served it",
    ]


@pytest.mark.asyncio
async def test_no_live_member_is_a_502(balancers: Any) -> None:
    _, port = await balancers([Backend("node1", "127.0.0.1", closed_port())])
    reply = await get(port)
    assert reply.status == 502
    assert reply.body == b"502 Bad Gateway: no cluster member could be reached.\n"
    assert reply.header("via") == [VIA]


@pytest.mark.asyncio
async def test_the_request_and_response_are_relayed_without_hop_by_hop_headers(shop: Shop, balancers: Any) -> None:
    _, port = await balancers([await shop.member("node1")])
    reply = await get(port, "/cart?item=a%20b", method="POST", body=b'{"qty": 2}')
    seen = json.loads(reply.body)
    assert seen["request"] == "POST /cart?item=a%20b HTTP/1.1"
    assert seen["body"] == '{"qty": 2}'
    assert [tuple(h) for h in seen["headers"]] == [
        ("Host", "shop.test"),
        ("Content-Length", "10"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Via", VIA),
        ("Connection", "close"),
    ]
    assert reply.header("connection") == ["close"]  # not the member's keep-alive
    assert reply.header("via") == [VIA]
    assert reply.header("content-type") == ["application/json"]


@pytest.mark.asyncio
async def test_expect_100_continue_is_answered_before_the_body_is_read(shop: Shop, balancers: Any) -> None:
    _, port = await balancers([await shop.member("node1")])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    reply = Reply.parse(await asyncio.wait_for(reader.read(), 10))
    writer.close()
    seen = json.loads(reply.body)
    assert (reply.status, seen["body"]) == (200, "hello")
    assert "Expect" not in [name for name, _ in seen["headers"]]


@pytest.mark.asyncio
async def test_requests_it_cannot_relay_are_refused_with_a_reason(shop: Shop, balancers: Any) -> None:
    _, port = await balancers([await shop.member("node1")])
    chunked = Reply.parse(await exchange(port, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
    assert chunked.status == 411
    assert chunked.body == b"411 Length Required: the development balancer needs a Content-Length.\n"
    garbage = Reply.parse(await exchange(port, b"HELLO\r\n\r\n"))
    assert (garbage.status, garbage.body) == (400, b"400 Bad Request: not an HTTP/1.x request line.\n")
    assert shop.seen == []


@pytest.mark.asyncio
async def test_a_member_that_hangs_up_without_answering(shop: Shop, balancers: Any) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    backends = [await shop.member("node1", hang_up), await shop.member("node2")]
    _, port = await balancers(backends)
    # A GET may be repeated elsewhere; a POST might have had its effect: 502, never twice.
    assert (await get(port, cookie="JSESSIONID=a.node1")).route == "node2"
    post = await get(port, cookie="JSESSIONID=a.node1", method="POST")
    assert (post.status, post.body) == (502, b"502 Bad Gateway: the member closed the connection.\n")
    assert [seen["request"] for seen in shop.seen] == ["GET / HTTP/1.1"]


def test_the_thread_runner_reports_a_busy_port_and_stops_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        runner = BalancerThread(DevBalancer([Backend("node1", "127.0.0.1", closed_port())]))
        with pytest.raises(OSError, match="address already in use"):
            runner.start("127.0.0.1", port)
    runner = BalancerThread(DevBalancer([Backend("node1", "127.0.0.1", closed_port())]))
    port = runner.start("127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    runner.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
