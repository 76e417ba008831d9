"""Settings fail at start, naming what to fix."""

from __future__ import annotations

import re
from typing import Any

import pytest

from replisession import ConfigError, CookieSettings, SessionConfig
from replisession.config import DEFAULT_STATIC_FILTER


def build(**kwargs: Any) -> SessionConfig:
    kwargs.setdefault("secret_key", "k")
    kwargs.setdefault("environ", {})
    return SessionConfig.build(**kwargs)


def test_defaults_follow_tomcat() -> None:
    config = build()
    assert config.cookie == CookieSettings(
        name="JSESSIONID",
        path="/",
        domain=None,
        secure=False,
        httponly=True,
        samesite="lax",
        partitioned=False,
        max_age=None,
    )
    assert config.policy.max_inactive_interval == 1800.0
    assert config.policy.max_lifetime is None
    assert config.policy.max_active_sessions is None
    assert config.route is None
    assert config.secret_keys == ("k",)
    assert config.static_filter is not None
    assert config.static_filter.pattern == DEFAULT_STATIC_FILTER


@pytest.mark.parametrize(
    "path",
    [
        "/a.css",
        "/js/app.js",
        "/x/y.min.mjs",
        "/app.js.map",
        "/i.PNG",
        "/p.jpeg",
        "/p.jpg",
        "/g.gif",
        "/s.svg",
        "/w.webp",
        "/f.woff2",
        "/f.woff",
        "/f.ttf",
        "/favicon.ico",
    ],
)
def test_default_static_filter_matches_static_files(path: str) -> None:
    pattern = build().static_filter
    assert pattern is not None
    assert pattern.fullmatch(path)


@pytest.mark.parametrize("path", ["/", "/login", "/api/cart", "/css", "/file.cssx", "/a.js/edit"])
def test_default_static_filter_leaves_pages_alone(path: str) -> None:
    pattern = build().static_filter
    assert pattern is not None
    assert pattern.fullmatch(path) is None


def test_environment_supplies_route_key_fallbacks_and_idle_timeout() -> None:
    config = SessionConfig.build(
        environ={
            "REPLISESSION_ROUTE": "node7",
            "REPLISESSION_SECRET_KEY": "new",
            "REPLISESSION_SECRET_KEY_FALLBACKS": "old,older",
            "REPLISESSION_MAX_INACTIVE_INTERVAL": "90",
        }
    )
    assert (config.route, config.secret_keys, config.policy.max_inactive_interval) == (
        "node7",
        ("new", "old", "older"),
        90.0,
    )


def test_arguments_win_over_the_environment() -> None:
    config = build(
        route="arg",
        max_inactive_interval=5,
        environ={"REPLISESSION_ROUTE": "env", "REPLISESSION_MAX_INACTIVE_INTERVAL": "90"},
    )
    assert (config.route, config.policy.max_inactive_interval) == ("arg", 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"route": "a.b"}, "route 'a.b' is not a valid route"),
        ({"route": "has space"}, "route 'has space' is not a valid route"),
        ({"environ": {"REPLISESSION_ROUTE": "x;y"}}, "REPLISESSION_ROUTE 'x;y' is not a valid route"),
        (
            {"environ": {"REPLISESSION_MAX_INACTIVE_INTERVAL": "soon"}},
            "REPLISESSION_MAX_INACTIVE_INTERVAL='soon' is not a number of seconds",
        ),
        (
            {"environ": {"REPLISESSION_MAX_INACTIVE_INTERVAL": "-5"}},
            "REPLISESSION_MAX_INACTIVE_INTERVAL='-5' must be a positive number of seconds",
        ),
        ({"secret_key": ""}, "secret_key must be a non-empty string"),
        ({"secret_key": []}, "secret_key must be a non-empty string"),
        ({"secret_key": None}, "no secret key: pass secret_key= or set REPLISESSION_SECRET_KEY"),
        ({"static_filter": "("}, "static_filter '(' is not a valid regular expression"),
        ({"sweep_interval": 0}, "sweep_interval must be a positive number of seconds"),
        ({"max_active_sessions": 0}, "max_active_sessions must be a positive integer or None"),
        ({"max_inactive_interval": "long"}, "max_inactive_interval must be a number of seconds >= 0 or None"),
        ({"cookie": None, "max_lifetime": float("nan")}, "max_lifetime must be a number of seconds >= 0 or None"),
    ],
)
def test_invalid_settings_fail_naming_the_setting(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "session_cookie 'bad name' is not a valid cookie name"),
        ({"samesite": "sometimes"}, "same_site must be 'lax', 'strict' or 'none'"),
        ({"max_age": 1.5}, "max_age must be an integer number of seconds or None"),
        ({"path": "/a;b"}, "cookie path '/a;b' contains a forbidden character"),
        ({"domain": "x\r\ny"}, "cookie domain"),
    ],
)
def test_invalid_cookie_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        CookieSettings(**kwargs)


def test_max_age_bounds_the_idle_timeout() -> None:
    assert build(cookie=CookieSettings(max_age=60)).policy.max_inactive_interval == 60.0
    assert build(cookie=CookieSettings(max_age=-1)).policy.max_inactive_interval == 0.0
    assert build(cookie=CookieSettings(max_age=7200)).policy.max_inactive_interval == 1800.0
    assert build(cookie=CookieSettings(max_age=60), max_inactive_interval=None).policy.max_inactive_interval == 60.0


def test_secret_key_lists_keep_their_order_and_accept_bytes_and_secrets() -> None:
    from starlette.datastructures import Secret

    assert build(secret_key=[Secret("new"), b"old"]).secret_keys == ("new", "old")
