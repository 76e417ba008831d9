"""The WSGI middleware around a plain WSGI application, driven like a WSGI server would."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.util import setup_testing_defaults

import pytest

from replisession import DestroyReason, Session, SessionListener
from replisession.testing import FakeClock
from replisession.wsgi import ENVIRON_KEY, SessionMiddleware

SECRET = "wsgi-secret"
COOKIE = re.compile(r"JSESSIONID=([A-Za-z0-9_-]{67}\.w1); path=/; httponly; samesite=lax")
DELETE = "JSESSIONID=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; httponly; samesite=lax"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    params = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/write":
        session.update(params)
    elif path == "/append":
        session.setdefault("cart", []).append(params["item"])
    elif path == "/invalidate":
        session.invalidate()
    elif path == "/rotate":
        session.rotate_id()
    elif path == "/clear":
        session.clear()
    elif path == "/bad":
        try:
            session["when"] = lambda: None
        except TypeError as exc:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [str(exc).encode()]
    if path == "/untouched":
        body = b"untouched"
    else:
        body = json.dumps(dict(session.items())).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Vary", "Accept-Encoding")])
    return [body]


@dataclass
class Result:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, values
        return values[0] if values else None

    @property
    def cookie(self) -> str:
        header = self.header("Set-Cookie")
        assert header is not None
        match = COOKIE.fullmatch(header)
        assert match is not None, header
        return match.group(1)

    def json(self) -> Any:
        return json.loads(self.body)


def call(wsgi: Any, url: str, cookie: str | None = None) -> Result:
    path, _, query = url.partition("?")
    environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query}
    if cookie is not None:
        environ["HTTP_COOKIE"] = f"JSESSIONID={cookie}"
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = wsgi(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Result(captured["status"], captured["headers"], body)


@pytest.fixture
def make(clock: FakeClock) -> Iterable[Callable[..., SessionMiddleware]]:
    made: list[SessionMiddleware] = []

    def factory(wrapped: Any = app, **options: Any) -> SessionMiddleware:
        options.setdefault("secret_key", SECRET)
        options.setdefault("route", "w1")
        options.setdefault("clock", clock)
        middleware = SessionMiddleware(wrapped, **options)
        made.append(middleware)
        return middleware

    yield factory
    for middleware in made:
        middleware.close()


def test_session_lives_in_the_environ_and_on_the_server(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    created = call(wsgi, "/write?user=alice")
    assert created.status == "200 OK"
    assert created.json() == {"user": "alice"}
    assert created.header("Vary") == "Accept-Encoding, Cookie"
    cookie = created.cookie
    again = call(wsgi, "/", cookie)
    assert again.json() == {"user": "alice"}
    assert again.header("Set-Cookie") is None
    assert wsgi.store.peek(cookie[:24]) == {"user": "alice"}


def test_untouched_request_sends_no_cookie_and_no_vary(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    result = call(wsgi, "/untouched")
    assert result.headers == [("Content-Type", "application/json"), ("Vary", "Accept-Encoding")]
    assert len(wsgi.store) == 0


def test_reading_marks_the_session_accessed_and_touches_it(
    make: Callable[..., SessionMiddleware], clock: FakeClock
) -> None:
    wsgi = make(max_inactive_interval=10)
    cookie = call(wsgi, "/write?a=1").cookie
    for _ in range(3):
        clock.advance(9)
        assert call(wsgi, "/", cookie).json() == {"a": "1"}
    clock.advance(9)
    assert call(wsgi, "/untouched", cookie).body == b"untouched"  # does not touch
    clock.advance(1)
    assert call(wsgi, "/", cookie).json() == {}


def test_forged_and_unknown_cookies_give_a_fresh_session(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    real = call(wsgi, "/write?a=1").cookie
    for forged in (real[:24] + "x" * 43 + ".w1", "x" * 67 + ".w1", real[:24], "..", "="):
        fresh = call(wsgi, "/write?b=2", forged)
        assert fresh.json() == {"b": "2"}
        assert fresh.cookie[:24] != real[:24]
    assert call(wsgi, "/", real).json() == {"a": "1"}
    # The signed id without its route is still ours; the answer re-issues it with the route.
    unrouted = call(wsgi, "/", real.removesuffix(".w1"))
    assert (unrouted.json(), unrouted.cookie) == ({"a": "1"}, real)


def test_nested_mutation_rotate_invalidate_clear(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    cookie = call(wsgi, "/append?item=book").cookie
    assert call(wsgi, "/append?item=pen", cookie).json() == {"cart": ["book", "pen"]}
    rotated = call(wsgi, "/rotate", cookie).cookie
    assert rotated[:24] != cookie[:24]
    assert call(wsgi, "/", cookie).json() == {}
    invalidated = call(wsgi, "/invalidate", rotated)
    assert invalidated.header("Set-Cookie") == DELETE
    assert call(wsgi, "/", rotated).json() == {}
    cleared_from = call(wsgi, "/write?a=1").cookie
    assert call(wsgi, "/clear", cleared_from).header("Set-Cookie") == DELETE
    assert len(wsgi.store) == 0


def test_unserializable_value_is_refused_at_the_assignment(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    result = call(wsgi, "/bad")
    assert result.status == "400 Bad Request"
    assert result.body == b"cannot store session['when'] = <function>: function is not serializable " + (
        b"(register it with SessionSerializer.register)"
    )


def test_static_urls_do_not_touch_sessions(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make()
    cookie = call(wsgi, "/write?a=1").cookie
    result = call(wsgi, "/img/logo.PNG", cookie)
    assert result.json() == {}
    assert result.headers == [("Content-Type", "application/json"), ("Vary", "Accept-Encoding")]


def test_max_active_sessions_gives_503_to_new_sessions_only(make: Callable[..., SessionMiddleware]) -> None:
    wsgi = make(max_active_sessions=1)
    cookie = call(wsgi, "/write?a=1").cookie
    refused = call(wsgi, "/write?b=2")
    assert refused.status == "503 Service Unavailable"
    assert refused.body == b"503 Service Unavailable: the server holds too many sessions; try again later.\n"
    assert call(wsgi, "/write?c=3", cookie).json() == {"a": "1", "c": "3"}


def test_503_also_when_the_app_handles_the_error_itself(make: Callable[..., SessionMiddleware]) -> None:
    def swallowing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            environ[ENVIRON_KEY]["a"] = 1
        except Exception:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"oops"]
        start_response("200 OK", [])
        return [b"ok"]

    wsgi = make(swallowing, max_active_sessions=1)
    assert call(wsgi, "/").status == "200 OK"
    refused = call(wsgi, "/")
    assert (refused.status, refused.header("Retry-After")) == ("503 Service Unavailable", "60")


def test_listeners_and_expiry_by_the_background_sweep(make: Callable[..., SessionMiddleware], clock: FakeClock) -> None:
    destroyed = threading.Event()
    reasons: list[DestroyReason] = []

    class Recorder(SessionListener):
        def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
            reasons.append(reason)
            destroyed.set()

    wsgi = make(max_inactive_interval=5, sweep_interval=0.01, listeners=[Recorder()])
    call(wsgi, "/write?a=1")
    clock.advance(5)
    assert destroyed.wait(timeout=10), "the background sweep never expired the session"
    assert reasons == [DestroyReason.EXPIRED]
    assert len(wsgi.store) == 0


def test_exceptions_release_the_session(make: Callable[..., SessionMiddleware]) -> None:
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[ENVIRON_KEY]["a"] = 1
        raise RuntimeError("boom")

    wsgi = make(failing)
    with pytest.raises(RuntimeError, match="boom"):
        call(wsgi, "/")
    (session,) = wsgi.store._sessions.values()
    assert session._holders == 0
