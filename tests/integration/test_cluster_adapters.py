"""Unchanged apps become cluster members by their environment alone (as <distributable/>
does for Tomcat): ASGI with and without a lifespan, WSGI, Flask; a member refused by the
others keeps serving alone; a process is never a cluster by its route alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from replisession import ConfigError, SessionMiddleware
from replisession.flask import ReplicatedSession
from replisession.wsgi import SessionMiddleware as WSGIMiddleware

from .servers import eventually, free_port

pytestmark = pytest.mark.integration

SECRET = "cluster-adapter-secret"


async def hit(request: Request) -> PlainTextResponse:
    request.session["hits"] = request.session.get("hits", 0) + 1
    return PlainTextResponse(str(request.session["hits"]))


def asgi_app() -> Starlette:
    return Starlette(routes=[Route("/", hit)])


def routes(middleware: Any) -> set[str]:
    return {m.route for m in middleware.node.member.members()}


@pytest.fixture
def cluster_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    seed_port = free_port()

    def configure(route: str, port: int | None = None, **extra: str) -> None:
        monkeypatch.setenv("REPLISESSION_ROUTE", route)
        monkeypatch.setenv("REPLISESSION_LISTEN", f"127.0.0.1:{port or free_port()}")
        monkeypatch.setenv("REPLISESSION_MEMBERS", f"127.0.0.1:{seed_port}")
        monkeypatch.setenv("REPLISESSION_CLUSTER_SECRET", extra.pop("secret", "s3cret"))
        monkeypatch.setenv("REPLISESSION_HEARTBEAT_INTERVAL", "0.1")
        monkeypatch.setenv("REPLISESSION_DROP_TIME", "0.6")
        for key, value in extra.items():
            monkeypatch.setenv(f"REPLISESSION_{key.upper()}", value)

    configure.seed_port = seed_port  # type: ignore[attr-defined]
    return configure


@pytest.fixture
def stoppers() -> Iterator[list[Callable[[], None]]]:
    registered: list[Callable[[], None]] = []
    yield registered
    for stop in registered:
        stop()


def two_apps(cluster_env: Any, stoppers: list[Callable[[], None]], **extra: str) -> tuple[Any, Any]:
    """node1 (the seed) and node2, neither started; both stopped after the test."""
    cluster_env("node1", port=cluster_env.seed_port, **extra)
    first = SessionMiddleware(asgi_app(), secret_key=SECRET)
    cluster_env("node2", **extra)
    second = SessionMiddleware(asgi_app(), secret_key=SECRET)
    stoppers.extend([first.node.stop, second.node.stop])
    return first, second


def test_asgi_apps_join_by_environment_and_leave_with_the_lifespan(
    cluster_env: Any, stoppers: list[Callable[[], None]]
) -> None:
    first, second = two_apps(cluster_env, stoppers)

    # No lifespan: the first request starts the member.
    assert TestClient(first).get("/").text == "1"
    with TestClient(second) as client:  # a lifespan starts it at startup
        assert second.node.member is not None
        assert second.node.member.running
        eventually(lambda: routes(first) == {"node2"} and routes(second) == {"node1"})
        assert client.get("/").text == "1"
    # Lifespan shutdown: node2 left gracefully, and node1 was told at once.
    eventually(lambda: routes(first) == set(), deadline=0.6)


def test_a_member_with_the_wrong_secret_serves_alone_and_warns_once_per_peer(
    cluster_env: Any, stoppers: list[Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    cluster_env("node1", port=cluster_env.seed_port)
    good = SessionMiddleware(asgi_app(), secret_key=SECRET)
    cluster_env("intruder", secret="not-the-secret")
    refused = SessionMiddleware(asgi_app(), secret_key=SECRET)
    stoppers.extend([good.node.stop, refused.node.stop])
    with caplog.at_level(logging.WARNING, logger="replisession"):
        good.node.start()
        client = TestClient(refused)
        for expected in ("1", "2", "3"):  # serving as a lone member all along
            assert client.get("/").text == expected
        eventually(lambda: any("refused" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING))
    assert routes(good) == set()
    assert routes(refused) == set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    by_dialler = [w for w in warnings if "refused by" in w]
    assert len(by_dialler) == 1, warnings


def test_wsgi_and_flask_apps_join_with_the_app(cluster_env: Any, stoppers: list[Callable[[], None]]) -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    cluster_env("wsgi1", port=cluster_env.seed_port)
    wsgi = WSGIMiddleware(wsgi_app, secret_key=SECRET)  # a WSGI member starts with the app
    stoppers.append(wsgi.close)
    cluster_env("flask1")
    app = flask.Flask(__name__)
    app.secret_key = SECRET
    ReplicatedSession(app)
    stoppers.append(app.extensions["replisession"].close)
    eventually(lambda: routes(wsgi) == {"flask1"} and routes(app.extensions["replisession"]) == {"wsgi1"})


def test_a_route_alone_does_not_make_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "solo")
    for name in ("REPLISESSION_MEMBERS", "REPLISESSION_MULTICAST"):
        monkeypatch.delenv(name, raising=False)
    middleware = SessionMiddleware(asgi_app(), secret_key=SECRET)
    assert middleware.node.member is None
    assert TestClient(middleware).get("/").text == "1"
    middleware.node.stop()


def test_a_public_listen_address_needs_a_cluster_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_LISTEN", "0.0.0.0:4000")
    monkeypatch.setenv("REPLISESSION_MEMBERS", "10.1.2.3:4000")
    monkeypatch.delenv("REPLISESSION_CLUSTER_SECRET", raising=False)
    with pytest.raises(ConfigError, match="REPLISESSION_CLUSTER_SECRET"):
        SessionMiddleware(asgi_app(), secret_key=SECRET)


def pair(cluster_env: Any, stoppers: list[Callable[[], None]], **extra: str) -> tuple[Any, Any]:
    first, second = two_apps(cluster_env, stoppers, **extra)
    first.node.start()
    second.node.start()
    eventually(lambda: routes(first) == {"node2"} and routes(second) == {"node1"})
    return first, second


def test_sync_mode_answers_only_after_every_member_applied_the_change(
    cluster_env: Any, stoppers: list[Callable[[], None]]
) -> None:
    first, second = pair(cluster_env, stoppers)
    for expected in ("1", "2", "3"):
        response = TestClient(first).get(
            "/", headers={"Cookie": f"JSESSIONID={cookie_of(first)}"} if expected != "1" else {}
        )
        assert response.text == expected
        # The response is out: the other member already holds the write.
        (session_id,) = first.node.store.ids()
        assert second.node.store.peek(session_id) == {"hits": int(expected)}


def cookie_of(middleware: Any) -> str:
    (session_id,) = middleware.node.store.ids()
    return str(middleware.front.codec.encode(session_id))


@pytest.mark.parametrize(("failure", "status"), [("log", 200), ("fail", 503)])
def test_a_member_that_does_not_answer_in_time(
    cluster_env: Any, stoppers: list[Callable[[], None]], failure: str, status: int
) -> None:
    first, second = pair(cluster_env, stoppers, send_failure=failure, send_timeout="0.3")
    # Stall the second member's event loop, as a SIGSTOP or a long GC pause would.
    second.node.member._loop_thread.loop.call_soon_threadsafe(time.sleep, 1.0)
    response = TestClient(first).get("/")
    assert response.status_code == status
    if status == 503:
        assert (
            response.text == "503 Service Unavailable: the session change did not reach every cluster member in time.\n"
        )


def test_under_a_lifespan_the_member_runs_on_the_servers_loop_and_sync_mode_still_waits(
    cluster_env: Any, stoppers: list[Callable[[], None]]
) -> None:
    first, second = two_apps(cluster_env, stoppers)
    with TestClient(first) as one, TestClient(second) as two:
        for middleware in (first, second):
            assert middleware.node.member.hosted  # no thread of its own: the lifespan's loop
        eventually(lambda: routes(first) == {"node2"} and routes(second) == {"node1"})
        cookie = None
        for expected in (1, 2, 3):
            response = one.get("/", headers={"Cookie": f"JSESSIONID={cookie}"} if cookie else {})
            assert response.text == str(expected)
            cookie = cookie or cookie_of(first)
            (session_id,) = first.node.store.ids()
            assert second.node.store.peek(session_id) == {"hits": expected}  # applied before the answer
        # The other member serves it, re-routed, and the write comes back the same way.
        response = two.get("/", headers={"Cookie": f"JSESSIONID={cookie}"})
        assert response.text == "4"
        assert ".node2" in response.headers["set-cookie"]
        assert first.node.store.peek(session_id) == {"hits": 4}
    eventually(lambda: not first.node.running and not second.node.running)
    assert not first.node.member.hosted
