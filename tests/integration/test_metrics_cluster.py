"""The counters of two in-process members, moved by real requests through the ASGI middleware
and real replication over loopback, read back through the metrics endpoint; one INFO line per
membership change and per failover."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from replisession import ClusterConfig, SessionMiddleware
from replisession.cluster_config import Seed
from replisession.core.channel import DeliveryStatus
from replisession.core.messages import MemberInfo, SendMode

from .servers import eventually, free_port

pytestmark = pytest.mark.integration

SECRET = "metrics-cluster-secret"
PATH = "/replisession/metrics"


async def write(request: Request) -> PlainTextResponse:
    request.session["hits"] = request.session.get("hits", 0) + 1
    return PlainTextResponse(str(request.session["hits"]))


async def read(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("hits")))


def member(route: str, port: int, seed: int) -> SessionMiddleware:
    cluster = ClusterConfig(
        route=route,
        listen_ports=(port, port),
        members=(Seed("127.0.0.1", seed, seed),),
        secret=b"metrics-cluster",
        heartbeat_interval=0.1,
        drop_time=0.6,
        probe_timeout=0.3,
        send_timeout=2.0,
    )
    app = Starlette(routes=[Route("/write", write), Route("/read", read)])
    return SessionMiddleware(app, secret_key=SECRET, route=route, cluster=cluster, metrics_path=PATH)


@pytest.fixture
def pair() -> Iterator[tuple[SessionMiddleware, SessionMiddleware]]:
    seed = free_port()
    first, second = member("node1", seed, seed), member("node2", free_port(), seed)
    try:
        yield first, second
    finally:
        second.node.stop()
        first.node.stop()


def routes(middleware: SessionMiddleware) -> list[str | None]:
    assert middleware.node.member is not None
    return [m.route for m in middleware.node.member.members()]


def report(middleware: SessionMiddleware) -> dict[str, Any]:
    response = TestClient(middleware).get(PATH)
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    return dict(response.json())


def cluster_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("replisession") and r.levelno == logging.INFO and text in r.getMessage()
    ]


def test_counters_follow_replication_failover_and_membership(
    pair: tuple[SessionMiddleware, SessionMiddleware], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    caplog.set_level(logging.INFO, logger="replisession")
    a.node.start()
    b.node.start()
    eventually(lambda: routes(a) == ["node2"] and routes(b) == ["node1"])
    # Each asked the other for its sessions when they met: one transfer each way.
    eventually(lambda: a.node.metrics.state_transfers_received == 1 == b.node.metrics.state_transfers_received)
    eventually(lambda: a.node.metrics.state_transfers_sent == 1 == b.node.metrics.state_transfers_sent)

    browser = TestClient(a)
    assert browser.get("/write").text == "1"
    assert browser.get("/write").text == "2"
    # sync mode: the responses left after node2 applied each delta, so the counts are exact now.
    ma, mb = a.node.metrics, b.node.metrics
    assert (ma.deltas_sent, mb.deltas_received, mb.deltas_applied, mb.deltas_rejected) == (2, 2, 2, 0)
    assert ma.lag.count == 2
    assert ma.lag.sum > 0
    first = report(a)
    assert first["member"]["route"] == "node1"
    assert first["member"]["cluster"] == "replisession"
    assert first["member"]["send_mode"] == "sync"
    assert first["member"]["incarnation"] == a.node.member.local.incarnation  # type: ignore[union-attr]
    assert [(m["route"], m["state"]) for m in first["members"]] == [("node2", "alive")]
    assert first["members"][0]["address"] == f"127.0.0.1:{b.node.member.local.port}"  # type: ignore[union-attr]
    assert first["sessions"] == {"primary": 1, "replica": 0, "created": 1, "expired": 0, "invalidated": 0}
    assert first["counters"]["peer_sent_bytes"] > 0
    assert first["counters"]["peer_received_bytes"] > 0
    assert first["lag"]["count"] == 2
    assert first["lag"]["p50"] is not None
    assert report(b)["sessions"] == {"primary": 0, "replica": 1, "created": 0, "expired": 0, "invalidated": 0}

    # Failover: node1's cookie reaches node2, which re-issues it with its own route.
    cookie = browser.cookies["JSESSIONID"]
    assert cookie.endswith(".node1")
    response = TestClient(b).get("/read", headers={"Cookie": f"JSESSIONID={cookie}"})
    assert response.text == "2"
    assert response.headers["set-cookie"].split(";")[0].endswith(".node2")
    assert mb.failovers == 1
    assert ma.failovers == 0
    assert mb.sessions_transferred == 1  # node1 was alive: node2 fetched its newest copy first
    assert cluster_lines(caplog, "failover:") == [
        "failover: a session routed to 'node1' is now served by 'node2'; its cookie is re-issued"
    ]
    assert report(b)["sessions"]["primary"] == 1
    eventually(lambda: report(a)["sessions"]["replica"] == 1)  # node1 heard of its new owner

    # A delta node2 cannot apply is rejected there and fails for node1.
    assert a.node.member is not None
    assert b.node.member is not None
    bad = a.node.member.send("delta", {"not": "a delta"}, SendMode.SYNC).result(5)
    assert [status for _, status, _ in bad.failures()] == [DeliveryStatus.FAILED]
    assert (mb.deltas_received, mb.deltas_rejected, ma.send_failures) == (3, 1, 1)

    # An acknowledgement that comes too late is an ack timeout.
    release = threading.Event()

    def stuck(sender: MemberInfo, payload: Any) -> None:
        release.wait(5)  # holds node2's member thread until the send timed out

    b.node.member.on("stuck", stuck)
    late = a.node.member.send("stuck", {}, SendMode.SYNC, ack_timeout=0.2).result(5)
    release.set()
    assert [status for _, status, _ in late.failures()] == [DeliveryStatus.TIMEOUT]
    assert ma.ack_timeouts == 1

    # One INFO line per membership change, on each side.
    assert cluster_lines(caplog, "member joined: node2@") == [f"member joined: {b.node.member.local}"]
    assert cluster_lines(caplog, "member joined: node1@") == [f"member joined: {a.node.member.local}"]
    gone = b.node.member.local
    b.node.stop()
    # The member thread changes its view first, then logs and tells its listeners (the counter):
    # waiting for the view alone once read the log before the line was written.
    eventually(lambda: routes(a) == [] and ma.members_left == 1)
    assert cluster_lines(caplog, "member left: node2@") == [f"member left: {gone} (left)"]
    assert (ma.members_joined, ma.members_left) == (1, 1)
    assert report(a)["members"] == []
