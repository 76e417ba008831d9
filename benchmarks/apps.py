"""The apps the HTTP benchmark serves: one endpoint, five session back ends.

Every variant answers ``GET /hit`` with the same work: read one attribute,
write it back incremented, return it as a tiny plain-text body. Only the
session machinery around the endpoint differs.

Each variant is a factory, so a server process builds only the app it serves
(replisession's Flask extension starts its expiry timer when it is installed):

* uvicorn: ``uvicorn --factory --app-dir benchmarks apps:asgi_replisession``
* gunicorn: ``gunicorn --chdir benchmarks 'apps:flask_replisession()'``

``asgi_cluster`` is the replication benchmark's member (``benchmarks/replication.py``):
the same ``GET /hit`` plus a few endpoints to write, read and inspect the cluster,
configured only by ``REPLISESSION_*`` variables (its route included).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import flask
from flask.sessions import SecureCookieSession, SessionInterface
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import replisession
from replisession import ClusterListener
from replisession.flask import ReplicatedSession

__all__ = [
    "ROUTE",
    "SECRET_KEY",
    "asgi_cluster",
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


# -- a cluster member for the replication benchmark ----------------------------------------


class _Events(ClusterListener, logging.Handler):
    """Membership events and the end of a state transfer, with ``time.monotonic()`` stamps.

    CLOCK_MONOTONIC is one clock for every process of the machine, so the benchmark
    compares these stamps with its own (the moment it sent SIGKILL, for instance).
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.INFO)
        self.guard = threading.Lock()  # not "lock": logging.Handler holds its own
        self.events: list[dict[str, Any]] = []

    def _add(self, event: str, **fields: Any) -> None:
        with self.guard:
            self.events.append({"event": event, "t": time.monotonic(), **fields})

    def member_joined(self, member: Any) -> None:
        self._add("joined", route=member.route, incarnation=member.incarnation)

    def member_left(self, member: Any, reason: str) -> None:
        self._add("left", route=member.route, incarnation=member.incarnation, reason=reason)

    def emit(self, record: logging.LogRecord) -> None:
        # The replicator's INFO line "state transfer from <member> complete: <n> sessions here".
        message = record.getMessage()
        if message.startswith("state transfer from") and "complete" in message:
            self._add("transfer_complete", message=message)


def asgi_cluster() -> Any:
    """A member configured by ``REPLISESSION_*`` (route, listen, members, send mode...).

    ``GET /hit`` as above; ``POST /write?k=KEY`` sets ``session[KEY] = KEY`` and answers
    the number of keys; ``GET /session`` answers the session as JSON (reading only);
    ``GET /cluster`` answers this member's route, its members, its session count and
    the timed events, without touching the session.
    """
    events = _Events()
    replication_log = logging.getLogger("replisession.replication")
    replication_log.setLevel(logging.INFO)
    replication_log.addHandler(events)

    async def write(request: Request) -> PlainTextResponse:
        key = request.query_params["k"]
        request.session[key] = key
        return PlainTextResponse(str(len(request.session)))

    async def read(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    async def cluster(request: Request) -> JSONResponse:
        node = middleware.node
        member = node.member
        manager = node.replicator.manager if node.replicator is not None else None
        with events.guard:
            timeline = list(events.events)
        return JSONResponse(
            {
                "route": node.config.route,
                "members": sorted(m.route or "" for m in member.members()) if member is not None else [],
                "sessions": len(node.store),
                "transfer_done": manager.transfer_done if manager is not None else None,
                "events": timeline,
                "now": time.monotonic(),
            }
        )

    inner = Starlette(
        routes=[
            Route("/hit", _hit),
            Route("/write", write, methods=["POST"]),
            Route("/session", read),
            Route("/cluster", cluster),
        ]
    )
    middleware = replisession.SessionMiddleware(inner, secret_key=SECRET_KEY, cluster_listeners=[events])
    return middleware


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
