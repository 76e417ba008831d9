"""The ASGI middleware through Starlette's and FastAPI's real request handling."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import replisession
from replisession import (
    ConfigError,
    DestroyReason,
    Session,
    SessionListener,
    SessionMiddleware,
    SessionUnavailableError,
)
from replisession.testing import FakeClock
from replisession.web.cookie import SessionCookieCodec

SECRET = "test-secret"
COOKIE = re.compile(r"JSESSIONID=([A-Za-z0-9_-]{67})\.node1; path=/; httponly; samesite=lax")
DELETE = "JSESSIONID=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; httponly; samesite=lax"


async def show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def write(request: Request) -> PlainTextResponse:
    for key, value in request.query_params.items():
        request.session[key] = value
    return PlainTextResponse("ok")


async def untouched(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no session here")


async def append(request: Request) -> JSONResponse:
    request.session.setdefault("cart", []).append(request.query_params["item"])
    return JSONResponse(request.session["cart"])


async def rotate(request: Request) -> PlainTextResponse:
    request.session.rotate_id()
    return PlainTextResponse("rotated")


async def invalidate(request: Request) -> PlainTextResponse:
    request.session.invalidate()
    return PlainTextResponse("bye")


async def clear(request: Request) -> PlainTextResponse:
    request.session.clear()
    return PlainTextResponse("cleared")


async def bad_value(request: Request) -> PlainTextResponse:
    try:
        request.session["thing"] = object()
    except TypeError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return PlainTextResponse("stored")  # pragma: no cover - the assignment must raise


async def vary_accept(request: Request) -> PlainTextResponse:
    request.session["seen"] = True
    return PlainTextResponse("ok", headers={"Vary": "Accept"})


async def static_write(request: Request) -> PlainTextResponse:
    return PlainTextResponse(repr(dict(request.session)))


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    websocket.session["ws"] = "seen"
    await websocket.close()


ROUTES = [
    Route("/", show),
    Route("/write", write),
    Route("/untouched", untouched),
    Route("/append", append),
    Route("/rotate", rotate),
    Route("/invalidate", invalidate),
    Route("/clear", clear),
    Route("/bad", bad_value),
    Route("/vary", vary_accept),
    Route("/assets/site.css", static_write),
    WebSocketRoute("/ws", ws_endpoint),
]


def make(clock: FakeClock | None = None, **options: Any) -> tuple[SessionMiddleware, TestClient]:
    options.setdefault("secret_key", SECRET)
    options.setdefault("route", "node1")
    if clock is not None:
        options["clock"] = clock
    middleware = SessionMiddleware(Starlette(routes=ROUTES), **options)
    return middleware, TestClient(middleware)


def cookie_of(response: Response | Any) -> str:
    match = COOKIE.fullmatch(response.headers["set-cookie"])
    assert match is not None, response.headers["set-cookie"]
    return f"{match.group(1)}.node1"


def get(client: TestClient, url: str, cookie: str | None = None) -> Any:
    headers = {"Cookie": f"JSESSIONID={cookie}"} if cookie is not None else {}
    client.cookies.clear()
    return client.get(url, headers=headers)


# -- drop-in compatibility ------------------------------------------------------------------


def test_accepts_every_argument_of_starlettes_middleware_in_the_same_place() -> None:
    theirs = inspect.signature(StarletteSessionMiddleware.__init__).parameters
    ours = inspect.signature(SessionMiddleware.__init__).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].kind == parameter.kind, name


def test_importable_from_the_package_and_from_replisession_asgi() -> None:
    from replisession.asgi import SessionMiddleware as from_asgi

    assert from_asgi is replisession.SessionMiddleware


def test_request_session_is_a_replisession_session_marked_accessed() -> None:
    seen: list[Any] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(request.session)
        return PlainTextResponse("ok")

    client = TestClient(SessionMiddleware(Starlette(routes=[Route("/", endpoint)]), secret_key=SECRET))
    response = client.get("/")
    assert type(seen[0]) is Session
    assert seen[0].accessed is True
    assert seen[0].modified is False
    assert response.headers["vary"] == "Cookie"
    assert "set-cookie" not in response.headers


def test_works_in_fastapi_through_add_middleware() -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, route="node1")

    @app.post("/hit")
    async def hit(request: FastAPIRequest) -> dict[str, int]:
        request.session["hits"] = request.session.get("hits", 0) + 1
        return {"hits": request.session["hits"]}

    client = TestClient(app)
    assert client.post("/hit").json() == {"hits": 1}
    assert client.post("/hit").json() == {"hits": 2}


# -- the cookie ------------------------------------------------------------------------------


def test_clearing_a_fresh_session_expires_a_stale_cookie() -> None:
    _, client = make()
    assert get(client, "/clear", "stale-cookie-from-an-old-deployment").headers["set-cookie"] == DELETE
    assert "set-cookie" not in get(client, "/", "stale-cookie-from-an-old-deployment").headers


def test_first_write_sets_tomcat_style_cookie_and_later_reads_send_none() -> None:
    middleware, client = make()
    first = get(client, "/write?user=alice")
    cookie = cookie_of(first)
    assert first.headers["vary"] == "Cookie"
    session_id = cookie[:24]
    assert list(middleware.store._sessions) == [session_id]
    assert "." not in cookie[:67]

    again = get(client, "/", cookie)
    assert again.json() == {"user": "alice"}
    assert "set-cookie" not in again.headers
    assert again.headers["vary"] == "Cookie"


def test_untouched_request_creates_nothing_and_sends_no_cookie_or_vary() -> None:
    middleware, client = make()
    response = get(client, "/untouched")
    assert response.text == "no session here"
    assert "set-cookie" not in response.headers
    assert "vary" not in response.headers
    assert len(middleware.store) == 0


def test_read_of_a_new_session_creates_nothing() -> None:
    middleware, client = make()
    response = get(client, "/")
    assert response.json() == {}
    assert "set-cookie" not in response.headers
    assert len(middleware.store) == 0


@pytest.mark.parametrize(
    ("options", "attributes"),
    [
        ({"max_age": 600}, "path=/; Max-Age=600; httponly; samesite=lax"),
        ({"path": "/app"}, "path=/app; httponly; samesite=lax"),
        ({"same_site": "strict"}, "path=/; httponly; samesite=strict"),
        ({"same_site": "none", "https_only": True}, "path=/; httponly; samesite=none; secure"),
        ({"domain": "example.com"}, "path=/; httponly; samesite=lax; domain=example.com"),
        ({"partitioned": True, "https_only": True}, "path=/; httponly; samesite=lax; secure; partitioned"),
        ({"session_cookie": "SID"}, "path=/; httponly; samesite=lax"),
    ],
)
def test_cookie_attributes_follow_starlettes_arguments(options: dict[str, Any], attributes: str) -> None:
    _, client = make(**options)
    name = options.get("session_cookie", "JSESSIONID")
    header = get(client, "/write?a=1").headers["set-cookie"]
    value, _, rest = header.partition("; ")
    assert re.fullmatch(rf"{name}=[A-Za-z0-9_-]{{67}}\.node1", value)
    assert rest == attributes


def test_no_route_means_a_bare_signed_id() -> None:
    _, client = make(route=None)
    header = get(client, "/write?a=1").headers["set-cookie"]
    assert re.fullmatch(r"JSESSIONID=[A-Za-z0-9_-]{67}; path=/; httponly; samesite=lax", header)


def test_route_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "envnode")
    middleware = SessionMiddleware(Starlette(routes=ROUTES), secret_key=SECRET)
    header = TestClient(middleware).get("/write?a=1").headers["set-cookie"]
    assert re.fullmatch(r"JSESSIONID=[A-Za-z0-9_-]{67}\.envnode; path=/; httponly; samesite=lax", header)


def test_bad_route_in_the_environment_fails_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "node.1")
    with pytest.raises(ConfigError, match=r"REPLISESSION_ROUTE 'node\.1' is not a valid route"):
        SessionMiddleware(Starlette(), secret_key=SECRET)


def test_secret_key_from_the_environment_and_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLISESSION_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="REPLISESSION_SECRET_KEY"):
        SessionMiddleware(Starlette())
    monkeypatch.setenv("REPLISESSION_SECRET_KEY", SECRET)
    _, client = make(secret_key=None)
    cookie = cookie_of(get(client, "/write?a=1"))
    # Same key, so a middleware configured by argument accepts the env-configured cookie's signature.
    assert SessionCookieCodec([SECRET], "node1").decode(cookie) == (cookie[:24], "node1", True)


def test_vary_is_merged_with_the_apps_own() -> None:
    _, client = make()
    assert get(client, "/vary").headers["vary"] == "Accept, Cookie"


def test_the_first_live_value_of_several_same_name_cookies_wins() -> None:
    _, client = make()
    cookie = cookie_of(get(client, "/write?a=1"))
    client.cookies.clear()
    response = client.get("/", headers={"Cookie": f"JSESSIONID=garbage; other=1; JSESSIONID={cookie}"})
    assert response.json() == {"a": "1"}
    assert "set-cookie" not in response.headers


# -- ids that are never adopted ----------------------------------------------------------------


def _forged_cookies(cookie: str) -> dict[str, str]:
    token = cookie.split(".")[0]
    flipped = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    other_key = SessionCookieCodec(["another-secret"], "node1").encode(token[:24])
    return {
        "tampered signature": f"{flipped}.node1",
        "tampered id": ("B" if token[0] == "A" else "A") + token[1:] + ".node1",
        "unsigned id": token[:24] + ".node1",
        "signed with a foreign key": other_key,
        "garbage": "definitely-not-a-session",
        "empty": "",
        "non-ascii": "é" * 67 + ".node1",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "tampered signature",
        "tampered id",
        "unsigned id",
        "signed with a foreign key",
        "garbage",
        "empty",
        "non-ascii",
    ],
)
def test_forged_cookie_gets_a_fresh_empty_session_that_is_not_adopted(kind: str) -> None:
    middleware, client = make()
    real = cookie_of(get(client, "/write?secret=1"))
    forged = _forged_cookies(real)[kind]
    client.cookies.clear()
    response = client.get("/write?mine=2", headers={"Cookie": f"JSESSIONID={forged}".encode()})
    assert response.status_code == 200
    fresh = cookie_of(response)
    assert fresh[:24] != real[:24]
    assert forged[:24] not in middleware.store or forged[:24] == real[:24]
    assert get(client, "/", fresh).json() == {"mine": "2"}
    assert get(client, "/", real).json() == {"secret": "1"}


def test_signed_cookie_for_an_unknown_id_is_not_adopted() -> None:
    middleware, client = make()
    planted = SessionCookieCodec([SECRET], "node1").encode("P" * 24)
    response = get(client, "/write?a=1", planted)
    assert cookie_of(response)[:24] != "P" * 24
    assert "P" * 24 not in middleware.store


def test_key_rotation_accepts_cookies_signed_with_an_older_key() -> None:
    old_middleware, old_client = make(secret_key="old")
    cookie = cookie_of(get(old_client, "/write?a=1"))
    codec = SessionCookieCodec(["new", "old"], "node1")
    assert codec.decode(cookie) == (cookie[:24], "node1", False)
    assert SessionCookieCodec(["new"], "node1").decode(cookie) is None
    # New cookies are signed with the newest key.
    assert SessionCookieCodec(["new"], "node1").decode(codec.encode("x" * 24)) == ("x" * 24, "node1", True)
    assert len(old_middleware.store) == 1


def test_rotated_keys_through_the_middleware() -> None:
    middleware, client = make(secret_key=["new", "old"])
    session = middleware.node.new_session()
    session["a"] = 1
    middleware.node.release(session)
    old_cookie = SessionCookieCodec(["old"], "node1").encode(session.id or "")
    response = get(client, "/", old_cookie)
    assert response.json() == {"a": 1}
    # Used under the old key, the cookie is re-signed with the newest, so "old" can be retired.
    resigned = cookie_of(response)
    assert SessionCookieCodec(["new"], "node1").decode(resigned) == (session.id, "node1", True)
    assert "set-cookie" not in get(client, "/", resigned).headers


# -- lifecycle ---------------------------------------------------------------------------------


def test_idle_expiry_gives_a_fresh_session_and_fires_listeners(clock: FakeClock) -> None:
    events: list[tuple[str, Any]] = []

    class Recorder(SessionListener):
        def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
            events.append(("destroyed", reason))

    middleware, client = make(clock, max_inactive_interval=60, listeners=[Recorder()])
    cookie = cookie_of(get(client, "/write?a=1"))
    clock.advance(59)
    assert get(client, "/", cookie).json() == {"a": "1"}  # the read touches the session
    clock.advance(59)
    assert get(client, "/", cookie).json() == {"a": "1"}
    clock.advance(60)
    assert get(client, "/", cookie).json() == {}  # before any sweep ran
    assert events == [("destroyed", DestroyReason.EXPIRED)]
    assert len(middleware.store) == 0


@pytest.mark.parametrize("max_age", [0, -1])
def test_max_age_zero_or_negative_is_expired_on_the_next_request(clock: FakeClock, max_age: int) -> None:
    _, client = make(clock, max_age=max_age)
    response = get(client, "/write?a=1")
    assert response.headers["set-cookie"].endswith(f"; path=/; Max-Age={max_age}; httponly; samesite=lax")
    cookie = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert get(client, "/", cookie).json() == {}


def test_max_age_bounds_the_idle_timeout_and_the_cookie_slides(clock: FakeClock) -> None:
    _, client = make(clock, max_age=400)
    cookie = cookie_of_max_age(get(client, "/write?a=1"))
    clock.advance(99)
    assert "set-cookie" not in get(client, "/", cookie).headers  # under a quarter of max_age
    clock.advance(1)
    refreshed = get(client, "/", cookie)
    assert cookie_of_max_age(refreshed) == cookie  # same id, fresh Max-Age
    clock.advance(399)
    assert get(client, "/", cookie).json() == {"a": "1"}
    clock.advance(400)
    assert get(client, "/", cookie).json() == {}


def cookie_of_max_age(response: Any) -> str:
    header = response.headers["set-cookie"]
    assert header.endswith("; path=/; Max-Age=400; httponly; samesite=lax"), header
    return str(header.split(";")[0].split("=", 1)[1])


def test_max_lifetime_is_absolute(clock: FakeClock) -> None:
    _, client = make(clock, max_lifetime=100)
    cookie = cookie_of(get(client, "/write?a=1"))
    for _ in range(3):
        clock.advance(30)
        assert get(client, "/", cookie).json() == {"a": "1"}
    clock.advance(10)
    assert get(client, "/", cookie).json() == {}


def test_rotate_id_reissues_the_cookie_and_kills_the_old_id() -> None:
    _, client = make()
    old = cookie_of(get(client, "/write?user=alice"))
    new = cookie_of(get(client, "/rotate", old))
    assert new[:24] != old[:24]
    assert get(client, "/", new).json() == {"user": "alice"}
    assert get(client, "/", old).json() == {}


def test_invalidate_expires_the_cookie_and_the_server_copy() -> None:
    middleware, client = make()
    cookie = cookie_of(get(client, "/write?user=alice"))
    response = get(client, "/invalidate", cookie)
    assert response.headers["set-cookie"] == DELETE
    assert len(middleware.store) == 0
    assert get(client, "/", cookie).json() == {}


def test_clear_deletes_the_cookie_with_matching_attributes() -> None:
    middleware, client = make(path="/app", domain="example.com", https_only=True, same_site="strict")
    created = client.get("/write?a=1")
    value = created.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    response = get(client, "/clear", value)
    assert response.headers["set-cookie"] == (
        "JSESSIONID=; path=/app; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; "
        "httponly; samesite=strict; secure; domain=example.com"
    )
    assert len(middleware.store) == 0


def test_nested_in_place_mutation_is_kept() -> None:
    _, client = make()
    cookie = cookie_of(get(client, "/append?item=book"))
    assert get(client, "/append?item=pen", cookie).json() == ["book", "pen"]
    assert get(client, "/", cookie).json() == {"cart": ["book", "pen"]}


def test_nested_mutation_reaches_the_delta() -> None:
    middleware, client = make()
    deltas: list[replisession.SessionDelta] = []
    middleware.node.add_delta_listener(deltas.append)
    cookie = cookie_of(get(client, "/append?item=book"))
    get(client, "/append?item=pen", cookie)
    serializer = middleware.store.serializer
    assert [(d.version, d.created, {k: serializer.loads(v) for k, v in d.sets.items()}) for d in deltas] == [
        (1, True, {"cart": ["book"]}),
        (2, False, {"cart": ["book", "pen"]}),
    ]


def test_unserializable_value_raises_type_error_naming_the_key() -> None:
    middleware, client = make()
    response = get(client, "/bad")
    assert response.status_code == 400
    assert response.text.startswith("cannot store session['thing'] = <object>: object is not serializable")
    assert len(middleware.store) == 0


def test_static_urls_never_load_create_or_store_a_session() -> None:
    middleware, client = make()
    cookie = cookie_of(get(client, "/write?a=1"))
    response = get(client, "/assets/site.css", cookie)
    assert response.text == "{}"
    assert "set-cookie" not in response.headers
    assert "vary" not in response.headers
    assert middleware.store.peek(cookie[:24]) is not None
    assert middleware.store.peek(cookie[:24]) == {"a": "1"}


def test_writing_on_a_filtered_url_is_a_clear_error() -> None:
    middleware, client = make(static_filter=r"/write")
    with pytest.raises(SessionUnavailableError, match="matches the static filter"):
        get(client, "/write?a=1")
    assert len(middleware.store) == 0


def test_static_filter_can_be_switched_off() -> None:
    _, client = make(static_filter=None)
    assert "set-cookie" not in get(client, "/assets/site.css").headers


def test_max_active_sessions_refuses_new_sessions_with_503_only() -> None:
    middleware, client = make(max_active_sessions=1)
    first = cookie_of(get(client, "/write?a=1"))
    refused = get(client, "/write?b=2")
    assert refused.status_code == 503
    assert refused.text == "503 Service Unavailable: the server holds too many sessions; try again later.\n"
    assert refused.headers["retry-after"] == "60"
    assert "set-cookie" not in refused.headers
    assert get(client, "/write?c=3", first).status_code == 200
    assert get(client, "/", first).json() == {"a": "1", "c": "3"}
    assert len(middleware.store) == 1


def test_max_active_sessions_503_also_when_the_app_turns_the_error_into_a_500() -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, max_active_sessions=1)

    @app.get("/write")
    async def write_one(request: FastAPIRequest) -> dict[str, bool]:
        request.session["a"] = 1
        return {"ok": True}

    outside = SessionMiddleware(Starlette(routes=ROUTES), secret_key=SECRET, max_active_sessions=1)
    for client in (TestClient(app), TestClient(outside, raise_server_exceptions=False)):
        assert client.get("/write?a=1").status_code == 200
        client.cookies.clear()
        refused = client.get("/write?a=1")
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "60")


def test_listeners_see_creation_and_attribute_changes() -> None:
    events: list[tuple[Any, ...]] = []

    class Recorder(SessionListener):
        def session_created(self, session: Session) -> None:
            events.append(("created",))

        def attribute_added(self, session: Session, key: str, value: Any) -> None:
            events.append(("added", key, value))

        def attribute_replaced(self, session: Session, key: str, old: Any, new: Any) -> None:
            events.append(("replaced", key, old, new))

        def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
            events.append(("destroyed", reason, dict(session)))

    _, client = make(listeners=[Recorder()])
    cookie = cookie_of(get(client, "/write?a=1"))
    get(client, "/write?a=2", cookie)
    get(client, "/invalidate", cookie)
    assert events == [
        ("created",),
        ("added", "a", "1"),
        ("replaced", "a", "1", "2"),
        ("destroyed", DestroyReason.INVALIDATED, {"a": "2"}),
    ]


def test_cookie_with_another_members_route_is_reissued_with_ours() -> None:
    _middleware, client = make()
    cookie = cookie_of(get(client, "/write?a=1"))
    foreign = cookie.replace(".node1", ".node2")
    response = get(client, "/", foreign)
    assert response.json() == {"a": "1"}
    assert cookie_of(response) == cookie


# -- concurrency, lifespan, websockets -------------------------------------------------------


def test_concurrent_requests_share_one_live_session_and_keep_both_writes() -> None:
    seen: list[Any] = []
    events: dict[str, asyncio.Event] = {}

    async def slow(request: Request) -> PlainTextResponse:
        seen.append(request.session)
        request.session["slow"] = 1
        events["first"].set()
        await events["second"].wait()
        return PlainTextResponse(repr(sorted(request.session)))

    async def fast(request: Request) -> PlainTextResponse:
        seen.append(request.session)
        await events["first"].wait()
        request.session["fast"] = 2
        events["second"].set()
        return PlainTextResponse(repr(sorted(request.session)))

    middleware = SessionMiddleware(
        Starlette(routes=[Route("/slow", slow), Route("/fast", fast), Route("/write", write)]), secret_key=SECRET
    )
    header = TestClient(middleware).get("/write?start=0").headers["set-cookie"]
    cookie = header.split(";")[0].split("=", 1)[1]

    async def scenario() -> list[bytes]:
        events["first"], events["second"] = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(call(middleware, "/slow", cookie), call(middleware, "/fast", cookie)))

    bodies = asyncio.run(scenario())
    assert seen[0] is seen[1]
    assert bodies == [b"['fast', 'slow', 'start']", b"['fast', 'slow', 'start']"]
    assert middleware.store.peek(cookie[:24]) == {"start": "0", "fast": 2, "slow": 1}


async def call(app: Any, path: str, cookie: str) -> bytes:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"cookie", f"JSESSIONID={cookie}".encode())],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return bytes(body)


def test_lifespan_starts_and_stops_the_member() -> None:
    middleware, _ = make()
    assert not middleware.node.running
    with TestClient(middleware) as client:
        assert middleware.node.running
        assert client.get("/untouched").status_code == 200
    assert not middleware.node.running


def test_without_lifespan_the_member_starts_on_the_first_request() -> None:
    middleware, client = make()
    assert not middleware.node.running
    get(client, "/")
    assert middleware.node.running
    middleware.node.stop()


def test_websocket_reads_the_session_and_keeps_its_writes() -> None:
    middleware, client = make()
    cookie = cookie_of(get(client, "/write?a=1"))
    client.cookies.clear()
    with client.websocket_connect("/ws", headers={"Cookie": f"JSESSIONID={cookie}"}) as ws:
        assert ws.receive_json() == {"a": "1"}
    assert middleware.store.peek(cookie[:24]) == {"a": "1", "ws": "seen"}


def test_websocket_without_a_session_leaves_nothing_behind() -> None:
    middleware, client = make()
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {}
    assert len(middleware.store) == 0
