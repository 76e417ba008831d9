"""The Flask extension through Flask's real request handling (``app.test_client()``).

Every request sends its cookie explicitly (``use_cookies=False``), so each test
says exactly what the browser would send, and every ``Set-Cookie`` is compared
whole.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import io
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import flask.sessions
import pytest
from flask.sessions import NullSession, SessionInterface, SessionMixin
from flask.testing import FlaskClient
from itsdangerous import Signer
from markupsafe import Markup
from werkzeug.test import TestResponse

from replisession import (
    ConfigError,
    DestroyReason,
    Session,
    SessionDelta,
    SessionListener,
    SessionUnavailableError,
)
from replisession.flask import FlaskSession, ReplicatedSession, ReplicatedSessionInterface
from replisession.testing import FakeClock

SECRET = "test-secret"
ROUTE = "node1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app" / "app.py"
#: What ``datetime.now()`` returns inside flask.sessions, so a permanent cookie's Expires is exact.
NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TOO_MANY = "503 Service Unavailable: the server holds too many sessions; try again later.\n"


def signed(session_id: str, key: str | bytes = SECRET, route: str | None = ROUTE) -> str:
    """The cookie value for ``session_id``, computed with itsdangerous directly (not the codec)."""
    signer = Signer(key, salt=b"replisession.session-id", digest_method=hashlib.sha256)
    signature = signer.get_signature(session_id).decode()
    assert len(session_id) == 24
    assert len(signature) == 43
    return f"{session_id}{signature}.{route}" if route else f"{session_id}{signature}"


def header(
    value: str,
    *,
    name: str = "JSESSIONID",
    domain: str | None = None,
    expires: str | None = None,
    max_age: int | None = None,
    secure: bool = False,
    httponly: bool = True,
    path: str = "/",
    samesite: str | None = None,
    partitioned: bool = False,
) -> str:
    """A whole ``Set-Cookie`` value, attributes in the order Werkzeug writes them."""
    parts = [f"{name}={value}"]
    parts += [f"Domain={domain}"] if domain else []
    parts += [f"Expires={expires}"] if expires else []
    parts += [f"Max-Age={max_age}"] if max_age is not None else []
    parts += ["Secure"] if secure else []
    parts += ["HttpOnly"] if httponly else []
    parts.append(f"Path={path}")
    parts += [f"SameSite={samesite}"] if samesite else []
    parts += ["Partitioned"] if partitioned else []
    return "; ".join(parts)


def set_cookie(value: str, **attributes: Any) -> list[str]:
    return [header(value, **attributes)]


def delete_cookie(**attributes: Any) -> list[str]:
    return [header("", expires="Thu, 01 Jan 1970 00:00:00 GMT", max_age=0, **attributes)]


def cookies(response: TestResponse) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def vary(response: TestResponse) -> list[str]:
    return response.headers.getlist("Vary")


# -- the app under test -------------------------------------------------------------------------


def add_views(app: flask.Flask) -> None:
    """Small views that each do one thing to ``flask.session``."""

    @app.get("/show")
    def show() -> Any:
        return flask.jsonify(dict(flask.session))

    @app.get("/write")
    def write() -> Any:
        for key, value in flask.request.args.items():
            flask.session[key] = value
        return flask.session.id

    @app.get("/remove")
    def remove() -> str:
        flask.session.pop(flask.request.args["key"])
        return "removed"

    @app.get("/untouched")
    def untouched() -> str:
        return "no session here"

    @app.get("/append")
    def append() -> Any:
        flask.session.setdefault("cart", []).append(flask.request.args["item"])
        return flask.jsonify(flask.session["cart"])

    @app.get("/rotate")
    def rotate() -> Any:
        return flask.session.rotate_id() or ""

    @app.get("/invalidate")
    def invalidate() -> str:
        flask.session.invalidate()
        return "bye"

    @app.get("/invalidate-and-write")
    def invalidate_and_write() -> Any:
        flask.session.invalidate()
        flask.session["fresh"] = "yes"
        return flask.session.id

    @app.get("/clear")
    def clear() -> str:
        flask.session.clear()
        return "cleared"

    @app.get("/permanent")
    def permanent() -> str:
        flask.session.permanent = flask.request.args["on"] == "1"
        return "ok"

    @app.get("/bad")
    def bad() -> Any:
        try:
            flask.session["thing"] = object()
        except TypeError as exc:
            return str(exc), 400
        return "stored", 500  # pragma: no cover - the assignment must raise

    @app.get("/bad-nested")
    def bad_nested() -> Any:
        try:
            flask.session["cart"] = ["ok", {"nested": object()}]
        except TypeError as exc:
            return str(exc), 400
        return "stored", 500  # pragma: no cover - the assignment must raise

    @app.get("/vary")
    def vary_accept() -> Any:
        flask.session["seen"] = "yes"
        return "ok", 200, {"Vary": "Accept"}

    @app.get("/boom")
    def boom() -> str:
        flask.session["before"] = "boom"
        raise RuntimeError("the view failed")

    @app.get("/theme.css")
    def theme() -> Any:
        return repr(dict(flask.session))

    @app.get("/write.css")
    def write_on_static() -> Any:
        flask.session["a"] = "1"
        return "stored", 500  # pragma: no cover - the assignment must raise


AppFactory = Callable[..., tuple[flask.Flask, ReplicatedSessionInterface]]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REPLISESSION_ROUTE",
        "REPLISESSION_SECRET_KEY",
        "REPLISESSION_SECRET_KEY_FALLBACKS",
        "REPLISESSION_MAX_INACTIVE_INTERVAL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _frozen_expiry_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    class FrozenDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> FrozenDatetime:
            return cls.fromtimestamp(NOW.timestamp(), tz)

    monkeypatch.setattr(flask.sessions, "datetime", FrozenDatetime)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Builds an app with the views above; stops every member's timer at the end of the test."""
    interfaces: list[ReplicatedSessionInterface] = []
    (tmp_path / "app.css").write_text("body {}\n")
    (tmp_path / "notes.txt").write_text("plain notes\n")

    def factory(config: dict[str, Any] | None = None, **options: Any) -> tuple[flask.Flask, ReplicatedSessionInterface]:
        app = flask.Flask(__name__, static_folder=str(tmp_path), static_url_path="/static")
        app.config.update(TESTING=True, SECRET_KEY=SECRET, SESSION_COOKIE_NAME="JSESSIONID")
        app.config.update(config or {})
        add_views(app)
        options.setdefault("route", ROUTE)
        interface = ReplicatedSession(**options).init_app(app)
        interfaces.append(interface)
        return app, interface

    yield factory
    for interface in interfaces:
        interface.node.stop()


def get(app: flask.Flask, url: str, cookie: str | None = None, name: str = "JSESSIONID") -> TestResponse:
    """GET ``url`` sending exactly the cookie given (buffered, so file responses are closed)."""
    headers = {"Cookie": f"{name}={cookie}"} if cookie is not None else {}
    client: FlaskClient = app.test_client(use_cookies=False)
    return client.get(url, headers=headers, buffered=True)


def start(app: flask.Flask, query: str = "a=1") -> tuple[str, str]:
    """A new session holding ``query``: ``(its id, its cookie value)``."""
    response = get(app, f"/write?{query}")
    session_id = response.text
    assert cookies(response) == set_cookie(signed(session_id))
    return session_id, signed(session_id)


def start_with_key(app: flask.Flask, key: str | bytes) -> tuple[str, str]:
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text, key=key))
    return response.text, signed(response.text, key=key)


def response_id(response: TestResponse) -> str:
    """The session id in a response's Set-Cookie (checked whole by the caller)."""
    return response.headers["Set-Cookie"].split(";")[0].removeprefix("JSESSIONID=")[:24]


def expires(after: dt.timedelta) -> str:
    return (NOW + after).strftime("%a, %d %b %Y %H:%M:%S GMT")


def replicated(interface: ReplicatedSessionInterface, deltas: list[SessionDelta]) -> dict[str, Any]:
    """The attributes a replica would rebuild from ``deltas``: decoded from the bytes sent."""
    serializer = interface.node.store.serializer
    state: dict[str, Any] = {}
    for delta in deltas:
        state.update({key: serializer.loads(value) for key, value in delta.sets.items()})
        for key in delta.removes:
            del state[key]
    return state


# -- installation ------------------------------------------------------------------------------


def test_init_app_installs_a_session_interface_and_registers_the_extension(make_app: AppFactory) -> None:
    app, interface = make_app()
    assert isinstance(interface, SessionInterface)
    assert app.session_interface is interface
    assert app.extensions["replisession"] is interface
    assert interface.node.running


def test_constructor_with_app_is_init_app(tmp_path: Path) -> None:
    app = flask.Flask(__name__, static_folder=str(tmp_path))
    app.config.update(TESTING=True, SECRET_KEY=SECRET, SESSION_COOKIE_NAME="JSESSIONID")
    add_views(app)
    ReplicatedSession(app, route=ROUTE)
    interface = app.extensions["replisession"]
    try:
        assert app.session_interface is interface
        _, cookie = start(app)
        assert get(app, "/show", cookie).json == {"a": "1"}
    finally:
        interface.node.stop()


def test_flask_session_is_a_replisession_session_with_flasks_mixin(make_app: AppFactory) -> None:
    app, _ = make_app()
    seen: list[Any] = []

    @app.get("/peek")
    def peek() -> str:
        seen.append(flask.session._get_current_object())
        return "ok"

    get(app, "/peek")
    session = seen[0]
    assert isinstance(session, FlaskSession)
    assert isinstance(session, Session)
    assert isinstance(session, SessionMixin)
    assert (session.new, session.permanent, session.accessed, session.modified, session.id) == (
        True,
        False,
        True,
        False,
        None,
    )


# -- the cookie --------------------------------------------------------------------------------


def test_first_write_sets_a_cookie_carrying_only_the_signed_id_and_the_route(make_app: AppFactory) -> None:
    app, interface = make_app()
    response = get(app, "/write?user=alice&card=4111-1111")
    session_id = response.text
    assert response.status_code == 200
    assert cookies(response) == [f"JSESSIONID={signed(session_id)}; HttpOnly; Path=/"]
    assert vary(response) == ["Cookie"]
    assert "alice" not in response.headers["Set-Cookie"]
    assert "4111" not in response.headers["Set-Cookie"]
    assert dict(interface.node.store.peek(session_id) or {}) == {"user": "alice", "card": "4111-1111"}
    assert len(interface.node.store) == 1


def test_later_requests_read_the_session_and_send_no_cookie(make_app: AppFactory) -> None:
    app, _ = make_app()
    _, cookie = start(app, "user=alice")
    response = get(app, "/show", cookie)
    assert (response.status_code, response.json) == (200, {"user": "alice"})
    assert cookies(response) == []
    assert vary(response) == ["Cookie"]
    rewrite = get(app, "/write?user=bob", cookie)
    assert cookies(rewrite) == []  # the same id: the cookie already says everything
    assert get(app, "/show", cookie).json == {"user": "bob"}


def test_a_request_that_does_not_touch_the_session_sends_no_cookie_and_no_vary(make_app: AppFactory) -> None:
    app, interface = make_app()
    response = get(app, "/untouched")
    assert (response.status_code, response.text) == (200, "no session here")
    assert cookies(response) == []
    assert vary(response) == []
    assert len(interface.node.store) == 0
    _, cookie = start(app)
    with_cookie = get(app, "/untouched", cookie)
    assert cookies(with_cookie) == []
    assert vary(with_cookie) == []


def test_reading_a_new_session_creates_nothing(make_app: AppFactory) -> None:
    app, interface = make_app()
    response = get(app, "/show")
    assert response.json == {}
    assert cookies(response) == []
    assert vary(response) == ["Cookie"]
    assert len(interface.node.store) == 0


def test_vary_is_merged_with_the_views_own(make_app: AppFactory) -> None:
    app, _ = make_app()
    response = get(app, "/vary")
    assert response.headers["Vary"] == "Accept, Cookie"


def test_route_comes_from_the_environment(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "env-node_2")
    app, _ = make_app(route=None)
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text, route="env-node_2"))


def test_the_route_argument_wins_over_the_environment(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "env-node")
    app, _ = make_app(route="arg-node")
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text, route="arg-node"))


def test_a_bad_route_fails_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "node.1")
    with pytest.raises(ConfigError, match=r"^REPLISESSION_ROUTE 'node\.1' is not a valid route"):
        ReplicatedSession()


def test_without_a_route_the_cookie_is_the_signed_id_alone(make_app: AppFactory) -> None:
    app, _ = make_app(route=None)
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text, route=None))
    assert get(app, "/show", signed(response.text, route=None)).json == {"a": "1"}


def test_a_cookie_naming_another_members_route_is_reissued_with_ours(make_app: AppFactory) -> None:
    app, _ = make_app()
    session_id, cookie = start(app)
    failed_over = get(app, "/show", cookie.replace(".node1", ".node2"))
    assert failed_over.json == {"a": "1"}
    assert cookies(failed_over) == set_cookie(cookie)
    route_less = get(app, "/show", signed(session_id, route=None))
    assert cookies(route_less) == set_cookie(cookie)


def test_the_first_live_value_of_several_same_name_cookies_wins(make_app: AppFactory) -> None:
    app, _ = make_app()
    _, stale = start(app, "old=1")
    get(app, "/invalidate", stale)
    _, live = start(app, "live=1")
    response = app.test_client(use_cookies=False).get(
        "/show", headers={"Cookie": f"JSESSIONID=garbage; JSESSIONID={stale}; other=x; JSESSIONID={live}"}
    )
    assert response.json == {"live": "1"}
    assert cookies(response) == []


# -- Flask's configuration ---------------------------------------------------------------------


def test_flasks_default_cookie_name_becomes_tomcats_jsessionid(make_app: AppFactory) -> None:
    # Balancer configurations written for Tomcat stick on JSESSIONID.
    app, _ = make_app({"SESSION_COOKIE_NAME": flask.Flask.default_config["SESSION_COOKIE_NAME"]})
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text), name="JSESSIONID")
    assert get(app, "/show", signed(response.text), name="JSESSIONID").json == {"a": "1"}
    assert get(app, "/show", signed(response.text), name="session").json == {}


@pytest.mark.parametrize(
    ("config", "attributes"),
    [
        ({}, {}),
        ({"SESSION_COOKIE_HTTPONLY": False}, {"httponly": False}),
        ({"SESSION_COOKIE_SECURE": True}, {"secure": True}),
        ({"SESSION_COOKIE_SAMESITE": "Lax"}, {"samesite": "Lax"}),
        ({"SESSION_COOKIE_SAMESITE": "Strict"}, {"samesite": "Strict"}),
        ({"SESSION_COOKIE_DOMAIN": "example.com"}, {"domain": "example.com"}),
        ({"SESSION_COOKIE_PATH": "/shop"}, {"path": "/shop"}),
        ({"APPLICATION_ROOT": "/root"}, {"path": "/root"}),
        ({"APPLICATION_ROOT": "/root", "SESSION_COOKIE_PATH": "/shop"}, {"path": "/shop"}),
        (
            {"SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_PARTITIONED": True},
            {"secure": True, "samesite": "None", "partitioned": True},
        ),
    ],
)
def test_cookie_attributes_follow_flasks_config_when_set_and_when_deleted(
    make_app: AppFactory, config: dict[str, Any], attributes: dict[str, Any]
) -> None:
    app, _ = make_app(config)
    response = get(app, "/write?a=1")
    assert cookies(response) == set_cookie(signed(response.text), **attributes)
    cleared = get(app, "/clear", signed(response.text))
    assert cookies(cleared) == delete_cookie(**attributes)
    assert vary(cleared) == ["Cookie"]


def test_every_attribute_together_and_a_custom_name(make_app: AppFactory) -> None:
    app, _ = make_app(
        {
            "SESSION_COOKIE_NAME": "SID",
            "SESSION_COOKIE_DOMAIN": "shop.example",
            "SESSION_COOKIE_PATH": "/app",
            "SESSION_COOKIE_HTTPONLY": False,
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
            "SESSION_COOKIE_PARTITIONED": True,
        }
    )
    response = get(app, "/write?a=1")
    attributes = {
        "name": "SID",
        "domain": "shop.example",
        "secure": True,
        "httponly": False,
        "path": "/app",
        "samesite": "Strict",
        "partitioned": True,
    }
    assert cookies(response) == [
        f"SID={signed(response.text)}; Domain=shop.example; Secure; Path=/app; SameSite=Strict; Partitioned"
    ]
    assert cookies(response) == set_cookie(signed(response.text), **attributes)
    assert get(app, "/show", signed(response.text), name="SID").json == {"a": "1"}
    invalidated = get(app, "/invalidate", signed(response.text), name="SID")
    assert cookies(invalidated) == [
        "SID=; Domain=shop.example; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Secure; Path=/app; "
        "SameSite=Strict; Partitioned"
    ]


def test_application_root_shapes_the_cookie_path_under_a_script_root(make_app: AppFactory) -> None:
    app, _ = make_app({"APPLICATION_ROOT": "/shop"})
    client = app.test_client()  # with its cookie jar: the browser's path matching
    first = client.get("/write?a=1", environ_overrides={"SCRIPT_NAME": "/shop"})
    assert cookies(first) == set_cookie(signed(first.text), path="/shop")
    stored = client.get_cookie("JSESSIONID", path="/shop")
    assert stored is not None
    assert stored.value == signed(first.text)
    assert client.get("/show", environ_overrides={"SCRIPT_NAME": "/shop"}).json == {"a": "1"}


def test_no_secret_key_gives_flasks_null_session(make_app: AppFactory) -> None:
    app, interface = make_app({"SECRET_KEY": None})
    seen: list[Any] = []

    @app.get("/peek")
    def peek() -> Any:
        seen.append(flask.session._get_current_object())
        return flask.jsonify(dict(flask.session))

    response = get(app, "/peek", "whatever")
    assert (response.status_code, response.json) == (200, {})
    assert type(seen[0]) is NullSession
    assert cookies(response) == []
    assert vary(response) == []
    with pytest.raises(RuntimeError, match=r"^The session is unavailable because no secret key was set\."):
        get(app, "/write?a=1")
    assert len(interface.node.store) == 0


def test_an_empty_secret_key_also_gives_the_null_session(make_app: AppFactory) -> None:
    app, _ = make_app({"SECRET_KEY": ""})
    with pytest.raises(RuntimeError, match="no secret key was set"):
        get(app, "/write?a=1")


def test_a_bytes_secret_key_that_is_not_utf8_works(make_app: AppFactory) -> None:
    key = b'_5#y2L"F4Q8z\n\xec]/'  # the key in Flask's quickstart
    app, _ = make_app({"SECRET_KEY": key})
    response = get(app, "/write?a=1")
    assert response.status_code == 200
    assert cookies(response) == set_cookie(signed(response.text, key=key))
    assert get(app, "/show", signed(response.text, key=key)).json == {"a": "1"}


def test_a_text_key_and_its_utf8_bytes_sign_alike(make_app: AppFactory) -> None:
    app, _ = make_app({"SECRET_KEY": "clé"})
    session_id, cookie = start_with_key(app, "clé")
    app.config["SECRET_KEY"] = "clé".encode()
    assert get(app, "/show", cookie).json == {"a": "1"}
    assert cookie == signed(session_id, key="clé".encode())


def test_key_rotation_accepts_a_cookie_signed_with_a_fallback_key(make_app: AppFactory) -> None:
    app, _ = make_app({"SECRET_KEY": "old-key"})
    session_id, old_cookie = start_with_key(app, "old-key")

    app.config.update(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["older-key", "old-key"])
    response = get(app, "/show", old_cookie)
    assert (response.status_code, response.json) == (200, {"a": "1"})
    # Used under a fallback key, the cookie is re-signed with the current key, so the
    # fallback can be retired without ending the sessions still in use.
    new_cookie = signed(session_id, key="new-key")
    assert cookies(response) == set_cookie(new_cookie)
    assert cookies(get(app, "/show", new_cookie)) == []
    assert cookies(get(app, "/untouched", old_cookie)) == []
    new_session = get(app, "/write?b=1")
    assert cookies(new_session) == set_cookie(signed(new_session.text, key="new-key"))

    app.config["SECRET_KEY_FALLBACKS"] = None  # Flask's default
    assert get(app, "/show", old_cookie).json == {}
    assert get(app, "/show", new_cookie).json == {"a": "1"}


def test_without_the_fallback_a_cookie_signed_with_the_old_key_is_ignored(make_app: AppFactory) -> None:
    app, _ = make_app({"SECRET_KEY": "old-key"})
    _, old_cookie = start_with_key(app, "old-key")
    app.config["SECRET_KEY"] = "new-key"
    response = get(app, "/show", old_cookie)
    assert (response.status_code, response.json, cookies(response)) == (200, {}, [])


# -- permanent sessions -------------------------------------------------------------------------


def test_a_permanent_session_gets_an_expiring_cookie_and_the_lifetime_as_idle_timeout(
    make_app: AppFactory, clock: FakeClock
) -> None:
    lifetime = dt.timedelta(hours=1)
    app, interface = make_app({"PERMANENT_SESSION_LIFETIME": lifetime}, clock=clock)
    session_id, cookie = start(app)
    response = get(app, "/permanent?on=1", cookie)
    assert cookies(response) == set_cookie(cookie, expires=expires(lifetime))
    stored = interface.node.store.peek(session_id)
    assert stored is not None
    assert stored.max_inactive_interval == 3600.0
    assert stored.permanent is True

    clock.advance(3599)
    assert get(app, "/show", cookie).json == {"a": "1", "_permanent": True}
    clock.advance(3599)  # idle time counts from the last use
    assert get(app, "/show", cookie).json == {"a": "1", "_permanent": True}
    clock.advance(3600)
    assert get(app, "/show", cookie).json == {}


def test_refresh_each_request_resends_a_permanent_cookie_whenever_the_session_is_used(
    make_app: AppFactory,
) -> None:
    app, _ = make_app({"PERMANENT_SESSION_LIFETIME": dt.timedelta(days=2)})
    _, cookie = start(app)
    get(app, "/permanent?on=1", cookie)
    refreshed = get(app, "/show", cookie)
    assert cookies(refreshed) == set_cookie(cookie, expires=expires(dt.timedelta(days=2)))
    untouched = get(app, "/untouched", cookie)
    assert (cookies(untouched), vary(untouched)) == ([], [])


def test_without_refresh_each_request_a_permanent_cookie_is_resent_only_when_modified(
    make_app: AppFactory,
) -> None:
    lifetime = dt.timedelta(days=2)
    app, _ = make_app({"PERMANENT_SESSION_LIFETIME": lifetime, "SESSION_REFRESH_EACH_REQUEST": False})
    _, cookie = start(app)
    made_permanent = get(app, "/permanent?on=1", cookie)
    assert cookies(made_permanent) == set_cookie(cookie, expires=expires(lifetime))
    assert cookies(get(app, "/show", cookie)) == []
    modified = get(app, "/write?a=2", cookie)
    assert cookies(modified) == set_cookie(cookie, expires=expires(lifetime))


def test_a_session_made_permanent_at_its_first_write_gets_an_expiring_cookie(make_app: AppFactory) -> None:
    app, interface = make_app({"SESSION_REFRESH_EACH_REQUEST": False})
    response = get(app, "/permanent?on=1")
    session_id = response_id(response)
    assert cookies(response) == [
        f"JSESSIONID={signed(session_id)}; Expires=Sat, 02 Feb 2030 03:04:05 GMT; HttpOnly; Path=/"
    ]
    assert interface.node.store.peek(session_id) == {"_permanent": True}


def test_making_a_session_non_permanent_resends_a_browser_session_cookie(make_app: AppFactory) -> None:
    app, _ = make_app()
    _, cookie = start(app)
    get(app, "/permanent?on=1", cookie)
    response = get(app, "/permanent?on=0", cookie)
    assert cookies(response) == set_cookie(cookie)
    assert cookies(get(app, "/show", cookie)) == []


def test_a_session_made_non_permanent_again_gets_the_default_idle_timeout_back(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app, _ = make_app({"PERMANENT_SESSION_LIFETIME": dt.timedelta(days=31)}, clock=clock)
    _, cookie = start(app)
    get(app, "/permanent?on=1", cookie)
    get(app, "/permanent?on=0", cookie)
    clock.advance(1800)
    assert get(app, "/show", cookie).json == {}


# -- cookies that never find a session -------------------------------------------------------------


def forged_cookies(session_id: str) -> dict[str, str]:
    real = signed(session_id)
    token = real.split(".")[0]
    flipped = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    return {
        "forged": "A" * 67 + ".node1",
        "tampered signature": f"{flipped}.node1",
        "tampered id": ("B" if token[0] == "A" else "A") + token[1:] + ".node1",
        "unsigned": f"{session_id}.node1",
        "unsigned, no route": session_id,
        "signature not base64": session_id + "!" * 43 + ".node1",
        "signed with a foreign key": signed(session_id, key="someone-elses-key"),
        "signed with the salt of Flask's cookie sessions": session_id
        + Signer(SECRET, salt="cookie-session", digest_method=hashlib.sha256).get_signature(session_id).decode()
        + ".node1",
        "unknown id, validly signed": signed("U" * 24),
        "garbage": "definitely-not-a-session",
        "empty": "",
        "only dots": "...",
        "non-ascii": "é" * 67 + ".node1",
        "huge": "x" * 4000,
    }


@pytest.mark.parametrize("kind", list(forged_cookies("S" * 24)))
def test_a_bad_cookie_gets_a_fresh_empty_session_and_never_an_error(make_app: AppFactory, kind: str) -> None:
    app, interface = make_app()
    session_id, real = start(app, "secret=1")
    bad = forged_cookies(session_id)[kind]

    read = get(app, "/show", bad)
    assert (read.status_code, read.json, cookies(read), vary(read)) == (200, {}, [], ["Cookie"])

    write = get(app, "/write?mine=2", bad)
    assert write.status_code == 200
    fresh_id = write.text
    assert fresh_id not in (session_id, "U" * 24)
    assert cookies(write) == set_cookie(signed(fresh_id))
    store = interface.node.store
    assert (len(store), session_id in store, fresh_id in store) == (2, True, True)
    assert get(app, "/show", signed(fresh_id)).json == {"mine": "2"}
    assert get(app, "/show", real).json == {"secret": "1"}


def test_an_expired_session_gives_a_fresh_one(make_app: AppFactory, clock: FakeClock) -> None:
    app, interface = make_app(clock=clock)
    session_id, cookie = start(app)
    clock.advance(1799)
    assert get(app, "/show", cookie).json == {"a": "1"}
    clock.advance(1800)
    response = get(app, "/show", cookie)
    assert (response.status_code, response.json, cookies(response)) == (200, {}, [])
    assert session_id not in interface.node.store
    fresh = get(app, "/write?b=2", cookie)
    assert fresh.text != session_id
    assert cookies(fresh) == set_cookie(signed(fresh.text))


def test_idle_timeout_comes_from_the_argument_or_the_environment(
    make_app: AppFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = make_app(clock=clock, max_inactive_interval=60)
    _, cookie = start(app)
    clock.advance(60)
    assert get(app, "/show", cookie).json == {}

    monkeypatch.setenv("REPLISESSION_MAX_INACTIVE_INTERVAL", "120")
    app, _ = make_app(clock=clock)
    _, cookie = start(app)
    clock.advance(119)
    assert get(app, "/show", cookie).json == {"a": "1"}
    clock.advance(120)
    assert get(app, "/show", cookie).json == {}


def test_max_lifetime_is_absolute(make_app: AppFactory, clock: FakeClock) -> None:
    app, _ = make_app(clock=clock, max_lifetime=100)
    _, cookie = start(app)
    clock.advance(60)
    assert get(app, "/show", cookie).json == {"a": "1"}
    clock.advance(40)
    assert get(app, "/show", cookie).json == {}


def test_the_expiry_timer_sweeps_idle_sessions(make_app: AppFactory, clock: FakeClock) -> None:
    app, interface = make_app(clock=clock)
    start(app)
    clock.advance(1800)
    assert interface.node.sweep() == 1
    assert len(interface.node.store) == 0


# -- rotate, invalidate, clear ---------------------------------------------------------------


def test_rotate_id_gives_a_new_cookie_and_the_old_one_finds_nothing(make_app: AppFactory) -> None:
    app, interface = make_app()
    old_id, old_cookie = start(app, "user=alice")
    response = get(app, "/rotate", old_cookie)
    new_id = response.text
    assert new_id != old_id
    assert cookies(response) == set_cookie(signed(new_id))
    assert vary(response) == ["Cookie"]
    store = interface.node.store
    assert (len(store), new_id in store, old_id in store) == (1, True, False)
    assert get(app, "/show", signed(new_id)).json == {"user": "alice"}
    stale = get(app, "/show", old_cookie)
    assert (stale.json, cookies(stale)) == ({}, [])


def test_rotate_id_of_a_new_session_returns_none_and_creates_nothing(make_app: AppFactory) -> None:
    app, interface = make_app()
    response = get(app, "/rotate")
    assert (response.text, cookies(response)) == ("", [])
    assert len(interface.node.store) == 0


def test_invalidate_expires_the_cookie_and_the_server_copy(make_app: AppFactory) -> None:
    app, interface = make_app({"SESSION_COOKIE_SAMESITE": "Lax"})
    response = get(app, "/write?a=1")
    session_id = response.text
    assert cookies(response) == set_cookie(signed(session_id), samesite="Lax")
    response = get(app, "/invalidate", signed(session_id))
    assert response.text == "bye"
    assert cookies(response) == delete_cookie(samesite="Lax")
    assert vary(response) == ["Cookie"]
    assert len(interface.node.store) == 0
    again = get(app, "/show", signed(session_id))
    assert (again.json, cookies(again)) == ({}, [])


def test_writing_after_invalidate_starts_a_fresh_session_in_the_same_request(make_app: AppFactory) -> None:
    app, interface = make_app()
    old_id, old_cookie = start(app)
    response = get(app, "/invalidate-and-write", old_cookie)
    new_id = response.text
    assert new_id != old_id
    assert cookies(response) == set_cookie(signed(new_id))
    store = interface.node.store
    assert (len(store), new_id in store, old_id in store) == (1, True, False)
    assert get(app, "/show", signed(new_id)).json == {"fresh": "yes"}
    assert get(app, "/show", old_cookie).json == {}


def test_invalidate_of_a_new_session_sends_nothing(make_app: AppFactory) -> None:
    app, _ = make_app()
    response = get(app, "/invalidate")
    assert (cookies(response), vary(response)) == ([], ["Cookie"])


def test_clear_deletes_the_cookie_and_the_server_copy(make_app: AppFactory) -> None:
    app, interface = make_app()
    session_id, cookie = start(app, "a=1&b=2")
    response = get(app, "/clear", cookie)
    assert cookies(response) == delete_cookie()
    assert vary(response) == ["Cookie"]
    assert session_id not in interface.node.store
    assert get(app, "/show", cookie).json == {}


def test_removing_the_last_key_also_deletes_the_cookie(make_app: AppFactory) -> None:
    app, interface = make_app()
    _, cookie = start(app, "a=1&b=2")
    assert cookies(get(app, "/remove?key=a", cookie)) == []
    assert cookies(get(app, "/remove?key=b", cookie)) == delete_cookie()
    assert len(interface.node.store) == 0


# -- values --------------------------------------------------------------------------------


def test_flashed_messages_round_trip_with_their_categories_and_types(make_app: AppFactory) -> None:
    app, interface = make_app()
    deltas: list[SessionDelta] = []
    interface.node.add_delta_listener(deltas.append)
    seen: list[Any] = []

    @app.get("/flash")
    def flash() -> str:
        flask.flash("Saved.")
        flask.flash(Markup("<b>Careful</b>"), "warning")
        return "flashed"

    @app.get("/messages")
    def messages() -> str:
        seen.append(flask.get_flashed_messages(with_categories=True))
        return "shown"

    response = get(app, "/flash")
    session_id = response_id(response)
    assert cookies(response) == set_cookie(signed(session_id))
    flashes = replicated(interface, deltas)["_flashes"]
    assert flashes == [("message", "Saved."), ("warning", Markup("<b>Careful</b>"))]
    assert [type(item) for item in flashes] == [tuple, tuple]
    assert [type(item[1]) for item in flashes] == [str, Markup]

    shown = get(app, "/messages", signed(session_id))
    assert seen == [[("message", "Saved."), ("warning", Markup("<b>Careful</b>"))]]
    assert type(seen[0][1][1]) is Markup
    # Reading the flashes pops them, which empties this session: its cookie goes.
    assert cookies(shown) == delete_cookie()
    assert deltas[-1] == SessionDelta(session_id=session_id, version=2, destroyed=True)
    get(app, "/messages", signed(session_id))
    assert seen[1] == []


def test_flasks_tagged_types_round_trip_with_their_types(make_app: AppFactory) -> None:
    app, interface = make_app()
    deltas: list[SessionDelta] = []
    interface.node.add_delta_listener(deltas.append)
    values = {
        "tuple": (1, "two", (3.0, None)),
        "bytes": b"\x00\xffraw",
        "markup": Markup("<em>hi</em>"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "utc datetime": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        "offset datetime": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "tag-like keys": {" t": "not a tag", " di": [1, 2]},
        "nested": {"list": [(1, 2), b"x", Markup("<i>m</i>")]},
    }
    loaded: list[dict[str, Any]] = []

    @app.get("/store")
    def store() -> Any:
        flask.session.update(values)
        return flask.session.id

    @app.get("/load")
    def load() -> str:
        loaded.append(dict(flask.session))
        return "loaded"

    session_id = get(app, "/store").text
    get(app, "/load", signed(session_id))
    assert loaded == [values]
    # What a replica gets is rebuilt from bytes: equal, and of the same types.
    copy = replicated(interface, deltas)
    assert copy == values
    assert {key: type(value) for key, value in copy.items()} == {key: type(value) for key, value in values.items()}
    assert copy["utc datetime"].tzinfo is dt.UTC
    assert copy["offset datetime"].utcoffset() == dt.timedelta(hours=-5)
    assert [type(item) for item in copy["nested"]["list"]] == [tuple, bytes, Markup]
    assert type(copy["tuple"][2]) is tuple


def test_an_unserializable_value_raises_type_error_naming_the_key(make_app: AppFactory) -> None:
    app, interface = make_app()
    response = get(app, "/bad")
    assert response.status_code == 400
    assert response.text == (
        "cannot store session['thing'] = <object>: object is not serializable "
        "(register it with SessionSerializer.register)"
    )
    assert cookies(response) == []
    assert len(interface.node.store) == 0
    nested = get(app, "/bad-nested")
    assert (nested.status_code, nested.text) == (
        400,
        "cannot store session['cart'] = <list>: object is not serializable "
        "(register it with SessionSerializer.register)",
    )


def test_a_rejected_value_leaves_an_existing_session_as_it_was(make_app: AppFactory) -> None:
    app, _ = make_app()
    _, cookie = start(app, "thing=kept")
    response = get(app, "/bad", cookie)
    assert (response.status_code, cookies(response)) == (400, [])
    assert get(app, "/show", cookie).json == {"thing": "kept"}


def test_nested_in_place_mutation_is_visible_on_the_next_request(make_app: AppFactory) -> None:
    app, _ = make_app()
    first = get(app, "/append?item=book")
    cookie = signed(response_id(first))
    assert first.json == ["book"]
    second = get(app, "/append?item=pen", cookie)
    assert (second.json, cookies(second)) == (["book", "pen"], [])
    assert get(app, "/show", cookie).json == {"cart": ["book", "pen"]}


def test_nested_in_place_mutation_reaches_the_replication_delta(make_app: AppFactory) -> None:
    app, interface = make_app()
    deltas: list[SessionDelta] = []
    interface.node.add_delta_listener(deltas.append)
    session_id = response_id(get(app, "/append?item=book"))
    get(app, "/append?item=pen", signed(session_id))
    get(app, "/show", signed(session_id))  # a read of an unchanged cart sends nothing
    serializer = interface.node.store.serializer
    assert [
        (d.session_id, d.version, d.created, {k: serializer.loads(v) for k, v in d.sets.items()}) for d in deltas
    ] == [
        (session_id, 1, True, {"cart": ["book"]}),
        (session_id, 2, False, {"cart": ["book", "pen"]}),
    ]


# -- static URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body"),
    [("/static/app.css", "body {}\n"), ("/static/notes.txt", "plain notes\n"), ("/theme.css", "{}")],
)
def test_static_urls_never_load_or_create_a_session(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, url: str, body: str
) -> None:
    app, interface = make_app()
    session_id, cookie = start(app)
    loads: list[str] = []
    monkeypatch.setattr(interface.node, "load", lambda sid: loads.append(sid))
    for sent in (cookie, None):
        response = get(app, url, sent)
        assert (response.status_code, response.text) == (200, body)
        assert cookies(response) == []
        assert vary(response) == []
    assert loads == []
    assert (len(interface.node.store), session_id in interface.node.store) == (1, True)


def test_writing_on_a_static_url_is_a_clear_error_and_creates_nothing(make_app: AppFactory) -> None:
    app, interface = make_app()
    with pytest.raises(SessionUnavailableError, match="matches the static filter"):
        get(app, "/write.css")
    assert len(interface.node.store) == 0


def test_the_static_filter_is_configurable(make_app: AppFactory) -> None:
    app, _ = make_app(static_filter=None)
    _, cookie = start(app)
    assert get(app, "/theme.css", cookie).text == "{'a': '1'}"
    app, _ = make_app(static_filter=r"/show")
    _, cookie = start(app)
    assert get(app, "/show", cookie).json == {}


# -- capacity, errors ----------------------------------------------------------------------------


def test_max_active_sessions_refuses_a_second_new_session_with_503(make_app: AppFactory) -> None:
    app, interface = make_app(max_active_sessions=1)
    _, first = start(app, "a=1")
    refused = get(app, "/write?b=2")
    assert (refused.status_code, refused.text) == (503, TOO_MANY)
    assert sorted(refused.headers.items()) == [
        ("Content-Length", str(len(TOO_MANY))),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Retry-After", "60"),
        ("Vary", "Cookie"),
    ]
    reading = get(app, "/show")  # a new visitor who only reads is not refused
    assert (reading.status_code, reading.json) == (200, {})

    assert get(app, "/write?c=3", first).status_code == 200
    assert get(app, "/show", first).json == {"a": "1", "c": "3"}
    assert len(interface.node.store) == 1

    get(app, "/invalidate", first)
    assert get(app, "/write?d=4").status_code == 200


def test_max_active_sessions_503_wins_over_an_apps_catch_all_error_handler(make_app: AppFactory) -> None:
    app, _ = make_app(max_active_sessions=1)

    @app.errorhandler(Exception)
    def everything(exc: Exception) -> Any:
        return "the app's own 500", 500

    start(app)
    refused = get(app, "/write?b=2")
    assert (refused.status_code, refused.text) == (503, TOO_MANY)


def test_max_active_sessions_503_also_when_the_view_swallows_the_refusal(make_app: AppFactory) -> None:
    app, interface = make_app(max_active_sessions=1)
    bodies: list[io.BytesIO] = []

    @app.get("/careless")
    def careless() -> Any:
        try:
            flask.session["a"] = "1"
        except Exception:
            bodies.append(io.BytesIO(b"saved, or so the app thinks"))
            return flask.send_file(bodies[-1], mimetype="text/plain"), 200, {"X-App": "mine"}
        return "saved"

    _, first = start(app)
    refused = get(app, "/careless")
    assert (refused.status_code, refused.text) == (503, TOO_MANY)
    assert sorted(refused.headers.items()) == [
        ("Content-Length", str(len(TOO_MANY))),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Retry-After", "60"),
        ("Vary", "Cookie"),
    ]
    assert bodies[0].closed
    assert len(interface.node.store) == 1
    assert (get(app, "/careless", first).status_code, get(app, "/show", first).json) == (200, {"a": "1"})


def test_a_failing_view_keeps_its_writes_and_releases_the_session(make_app: AppFactory, clock: FakeClock) -> None:
    app, interface = make_app({"TESTING": False}, clock=clock)
    _, cookie = start(app)
    response = get(app, "/boom", cookie)
    assert response.status_code == 500
    assert get(app, "/show", cookie).json == {"a": "1", "before": "boom"}
    clock.advance(1800)
    assert interface.node.sweep() == 1  # released: only sessions no request holds are swept


def test_a_propagated_exception_still_releases_the_session(make_app: AppFactory, clock: FakeClock) -> None:
    app, interface = make_app(clock=clock)
    _, cookie = start(app)
    with pytest.raises(RuntimeError, match=r"^the view failed$"):
        get(app, "/boom", cookie)
    clock.advance(1800)
    assert interface.node.sweep() == 1


# -- listeners ----------------------------------------------------------------------------------


class Recorder(SessionListener):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def session_created(self, session: Session) -> None:
        self.events.append(("created", session.id))

    def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
        self.events.append(("destroyed", session.id, reason, dict(session)))

    def attribute_added(self, session: Session, key: str, value: Any) -> None:
        self.events.append(("added", key, value))

    def attribute_replaced(self, session: Session, key: str, old_value: Any, new_value: Any) -> None:
        self.events.append(("replaced", key, old_value, new_value))

    def attribute_removed(self, session: Session, key: str, value: Any) -> None:
        self.events.append(("removed", key, value))


def test_listeners_see_creation_attribute_changes_and_destruction(make_app: AppFactory, clock: FakeClock) -> None:
    recorder = Recorder()
    app, _ = make_app(clock=clock, listeners=[recorder])
    first, cookie = start(app, "a=1&b=x")
    get(app, "/write?a=2", cookie)
    get(app, "/remove?key=b", cookie)
    get(app, "/invalidate", cookie)
    second, cookie = start(app, "c=3")
    get(app, "/clear", cookie)
    third, cookie = start(app, "d=4")
    clock.advance(1800)
    get(app, "/show", cookie)
    assert recorder.events == [
        ("created", first),
        ("added", "a", "1"),
        ("added", "b", "x"),
        ("replaced", "a", "1", "2"),
        ("removed", "b", "x"),
        ("destroyed", first, DestroyReason.INVALIDATED, {"a": "2"}),
        ("created", second),
        ("added", "c", "3"),
        ("removed", "c", "3"),
        ("destroyed", second, DestroyReason.INVALIDATED, {}),
        ("created", third),
        ("added", "d", "4"),
        ("destroyed", third, DestroyReason.EXPIRED, {"d": "4"}),
    ]


def test_a_failing_listener_does_not_fail_the_request(make_app: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SessionListener):
        def session_created(self, session: Session) -> None:
            raise ValueError("listener bug")

    recorder = Recorder()
    app, _ = make_app(listeners=[Broken(), recorder])
    session_id, _ = start(app)
    assert recorder.events == [("created", session_id), ("added", "a", "1")]
    assert "failed in session_created" in caplog.text


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_requests_share_one_live_session_and_keep_both_writes(make_app: AppFactory) -> None:
    app, interface = make_app()
    seen: list[Any] = []
    first_wrote, second_wrote = threading.Event(), threading.Event()

    @app.get("/slow")
    def slow() -> str:
        seen.append(flask.session._get_current_object())
        flask.session["slow"] = 1
        first_wrote.set()
        assert second_wrote.wait(timeout=10)
        return repr(sorted(flask.session))

    @app.get("/fast")
    def fast() -> str:
        assert first_wrote.wait(timeout=10)
        seen.append(flask.session._get_current_object())
        flask.session["fast"] = 2
        second_wrote.set()
        return repr(sorted(flask.session))

    session_id, cookie = start(app, "start=0")
    bodies: dict[str, str] = {}
    thread = threading.Thread(target=lambda: bodies.update(slow=get(app, "/slow", cookie).text))
    thread.start()
    bodies["fast"] = get(app, "/fast", cookie).text
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert seen[0] is seen[1]
    assert bodies == {"slow": "['fast', 'slow', 'start']", "fast": "['fast', 'slow', 'start']"}
    assert dict(interface.node.store.peek(session_id) or {}) == {"start": "0", "slow": 1, "fast": 2}


# -- the example app ------------------------------------------------------------------------------


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("REPLISESSION_SECRET_KEY", "example-secret")
    monkeypatch.setenv("REPLISESSION_ROUTE", "node7")
    module = load_example(monkeypatch)
    yield module
    module.app.extensions["replisession"].node.stop()


def load_example(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("replisession_flask_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # Flask finds templates from the module's file
    spec.loader.exec_module(module)
    return module


def example_cookie(response: TestResponse) -> str:
    session_id = response.json["session_id"]
    assert cookies(response) == set_cookie(signed(session_id, "example-secret", "node7"), name="JSESSIONID")
    return signed(session_id, "example-secret", "node7")


def test_example_login_cart_counter_and_state(example: Any) -> None:
    client = example.app.test_client(use_cookies=False)

    def post(url: str, cookie: str) -> TestResponse:
        return client.post(url, headers={"Cookie": f"JSESSIONID={cookie}"})

    assert client.get("/api/state").json == {
        "route": "node7",
        "pid": os.getpid(),
        "session_id": None,
        "user": None,
        "cart": [],
        "counter": 0,
    }
    anonymous = client.post("/counter")
    before_login = example_cookie(anonymous)

    login = post("/login?user=alice", before_login)
    assert login.status_code == 200
    after_login = example_cookie(login)
    assert after_login[:24] != before_login[:24]  # the id rotated on login
    stale = client.get("/api/state", headers={"Cookie": f"JSESSIONID={before_login}"})
    assert (stale.json["session_id"], stale.json["counter"]) == (None, 0)

    first_item = post("/cart?item=book", after_login)
    assert first_item.json["cart"] == ["book"]
    second_item = post("/cart?item=pen", after_login)
    assert (second_item.json["cart"], cookies(second_item)) == (["book", "pen"], [])
    assert post("/counter", after_login).json["counter"] == 2

    state = client.get("/api/state", headers={"Cookie": f"JSESSIONID={after_login}"})
    assert state.json == {
        "route": "node7",
        "pid": os.getpid(),
        "session_id": after_login[:24],
        "user": "alice",
        "cart": ["book", "pen"],
        "counter": 2,
    }
    page = client.get("/", headers={"Cookie": f"JSESSIONID={after_login}"})
    assert page.status_code == 200
    assert "Logged in as alice." in page.text
    assert '<code>["book", "pen"]</code>' in page.text
    assert "Logged in as alice." not in client.get("/", headers={"Cookie": f"JSESSIONID={after_login}"}).text

    logout = post("/logout", after_login)
    assert cookies(logout) == delete_cookie(name="JSESSIONID")
    after_logout = client.get("/api/state", headers={"Cookie": f"JSESSIONID={after_login}"})
    assert (after_logout.json["session_id"], after_logout.json["user"]) == (None, None)


def test_example_forms_redirect_back_to_the_page(example: Any) -> None:
    client = example.app.test_client()
    response = client.post("/cart", data={"item": "lamp"})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert client.get("/api/state").json["cart"] == ["lamp"]
    css = client.get("/static/app.css", buffered=True)
    assert (css.status_code, cookies(css), vary(css)) == (200, [], [])


def test_example_refuses_to_start_without_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^REPLISESSION_SECRET_KEY is not set: "):
        load_example(monkeypatch)
