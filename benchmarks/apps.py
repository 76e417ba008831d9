"""The apps the HTTP benchmark serves: one endpoint, five session back ends.

Every variant answers ``GET /hit`` with the same work: read one attribute,
write it back incremented, return it as a tiny plain-text body. Only the
session machinery around the endpoint differs.

Each variant is a factory, so a server process builds only the app it serves
(replisession's Flask extension starts its expiry timer when it is installed):

* uvicorn: ``uvicorn --factory --app-dir benchmarks apps:asgi_replisession``
* gunicorn: ``gunicorn --chdir benchmarks 'apps:flask_replisession()'``
"""

from __future__ import annotations

from typing import Any

import flask
from flask.sessions import SecureCookieSession, SessionInterface
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import replisession
from replisession.flask import ReplicatedSession

__all__ = [
    "ROUTE",
    "SECRET_KEY",
    "asgi_plain",
    "asgi_replisession",
    "asgi_starlette",
    "flask_cookie",
    "flask_plain",
    "flask_replisession",
]

SECRET_KEY = "replisession-benchmark-secret-key"  # fixed, so runs are comparable; never a real key
ROUTE = "bench"


# -- ASGI (Starlette) -------------------------------------------------------------------


async def _hit(request: Request) -> PlainTextResponse:
    # Without a session middleware there is no request.session: the baseline does
    # the same dict work on a throwaway dict, so it differs only in the middleware.
    session: Any = request.session if "session" in request.scope else {}
    n = session.get("n", 0) + 1
    session["n"] = n
    return PlainTextResponse(str(n))


def _starlette(middleware: list[Middleware]) -> Starlette:
    return Starlette(routes=[Route("/hit", _hit)], middleware=middleware)


def asgi_plain() -> Starlette:
    """No session middleware: the baseline every ratio is taken against."""
    return _starlette([])


def asgi_starlette() -> Starlette:
    """Starlette's SessionMiddleware: the whole session in a signed cookie."""
    return _starlette([Middleware(StarletteSessionMiddleware, secret_key=SECRET_KEY)])


def asgi_replisession() -> Starlette:
    """replisession's drop-in SessionMiddleware: the session on the server, a signed id in the cookie."""
    return _starlette([Middleware(replisession.SessionMiddleware, secret_key=SECRET_KEY, route=ROUTE)])


# -- WSGI (Flask) -----------------------------------------------------------------------


def _flask_hit() -> tuple[str, int, dict[str, str]]:
    n = flask.session.get("n", 0) + 1
    flask.session["n"] = n
    return str(n), 200, {"Content-Type": "text/plain; charset=utf-8"}


def _flask() -> flask.Flask:
    app = flask.Flask("replisession_benchmark")
    app.secret_key = SECRET_KEY
    app.add_url_rule("/hit", "hit", _flask_hit)
    return app


class _NoSessionInterface(SessionInterface):
    """Hands every request an empty session and saves nothing: Flask's cost without sessions."""

    def open_session(self, app: flask.Flask, request: Any) -> SecureCookieSession:
        return SecureCookieSession()

    def save_session(self, app: flask.Flask, session: Any, response: Any) -> None:
        return None


def flask_plain() -> flask.Flask:
    """Flask with a session that is neither loaded nor saved (the in-process benchmark's baseline)."""
    app = _flask()
    app.session_interface = _NoSessionInterface()
    return app


def flask_cookie() -> flask.Flask:
    """Flask's default session: the whole session in a signed cookie."""
    return _flask()


def flask_replisession() -> flask.Flask:
    """Flask with replisession's session interface (reads ``app.secret_key``)."""
    app = _flask()
    ReplicatedSession(app, route=ROUTE)
    return app
