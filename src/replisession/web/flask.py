"""Flask integration: ``flask.session`` kept on the server and replicated.

``ReplicatedSession(app)`` (or ``ReplicatedSession().init_app(app)``) installs a
:class:`flask.sessions.SessionInterface` that honours Flask's own settings:
``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` sign the id, the
``SESSION_COOKIE_*`` keys (and ``APPLICATION_ROOT``) shape the cookie,
``PERMANENT_SESSION_LIFETIME`` is a permanent session's cookie expiry and idle
timeout, and ``SESSION_REFRESH_EACH_REQUEST`` re-sends a permanent session's
cookie on requests that use the session. Without a secret key Flask's
``NullSession`` is used, as with Flask's own interface.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import flask
from flask.sessions import SessionInterface, SessionMixin
from markupsafe import Markup

from ..config import DEFAULT_STATIC_FILTER, UNSET, SessionConfig
from ..core.listeners import SessionListener
from ..core.serializer import SessionSerializer
from ..core.session import Session
from ..errors import TooManySessionsError
from ..node import Node
from .cookie import SessionCookieCodec
from .front import CookieAction, RequestSession, SessionFront

if TYPE_CHECKING:
    from flask.wrappers import Request, Response

__all__ = ["FlaskSession", "ReplicatedSession", "ReplicatedSessionInterface"]

_HELD = "replisession.held"


class FlaskSession(Session, SessionMixin):
    """A replisession :class:`~replisession.Session` with Flask's ``permanent`` flag."""


class ReplicatedSessionInterface(SessionInterface):
    session_class = FlaskSession

    def __init__(self, node: Node) -> None:
        self.node = node
        self.front = SessionFront(node, None)
        self._codecs: dict[tuple[Any, ...], SessionCookieCodec] = {}

    def codec(self, app: flask.Flask) -> SessionCookieCodec:
        """The cookie codec for the app's current keys (newest first, then the fallbacks)."""
        # Flask's default for SECRET_KEY_FALLBACKS is None; itsdangerous tries the last of
        # Flask's list first, so the fallbacks go newest first after the current key.
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or ()
        keys = tuple(k if isinstance(k, str | bytes) else str(k) for k in (app.secret_key, *reversed(fallbacks)) if k)
        codec = self._codecs.get(keys)
        if codec is None:
            # Bytes keys pass through as bytes, as Flask's signer takes them: os.urandom()
            # keys are not UTF-8, and decoding them would fail every request.
            codec = self._codecs[keys] = SessionCookieCodec(cast("list[str]", list(keys)), self.node.config.route)
        return codec

    def open_session(self, app: flask.Flask, request: Request) -> SessionMixin | None:
        if not app.secret_key:
            return None
        held = self.front.open(request.path, request.cookies.getlist(self.get_cookie_name(app)), self.codec(app))
        if held is None:
            return self.front.static_session()  # type: ignore[return-value]
        request.environ[_HELD] = held
        return held.session  # type: ignore[return-value]

    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None:
        held: RequestSession | None = flask.request.environ.pop(_HELD, None)
        if held is None or held.session is not session:
            return
        assert isinstance(session, FlaskSession)
        permanent = session.permanent
        if permanent:
            lifetime = app.permanent_session_lifetime.total_seconds()
            if session.max_inactive_interval != lifetime:
                session.max_inactive_interval = lifetime
        refresh_after = 0.0 if permanent and app.config["SESSION_REFRESH_EACH_REQUEST"] else None
        action = self.front.close(held, refresh_after)
        if session.accessed:
            response.vary.add("Cookie")
        if action is CookieAction.NONE:
            return
        name = self.get_cookie_name(app)
        attributes: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }
        if action is CookieAction.SET:
            assert session.id is not None
            response.set_cookie(
                name, self.codec(app).encode(session.id), expires=self.get_expiration_time(app, session), **attributes
            )
        else:
            response.delete_cookie(name, **attributes)
        response.vary.add("Cookie")

    def release_unsaved(self, exc: BaseException | None = None) -> None:
        """Teardown hook: release a session whose response never reached save_session."""
        held = flask.request.environ.pop(_HELD, None)
        if held is not None:
            self.front.close(held)


class ReplicatedSession:
    """The Flask extension. ``ReplicatedSession(app)`` or ``ReplicatedSession().init_app(app)``.

    Keyword arguments are replisession's session settings (those of the ASGI
    middleware that Flask's config does not already cover).
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        route: str | None = None,
        max_inactive_interval: float | None = UNSET,
        max_lifetime: float | None = None,
        max_active_sessions: int | None = None,
        static_filter: str | re.Pattern[str] | None = DEFAULT_STATIC_FILTER,
        detect_mutations: bool = True,
        listeners: Iterable[SessionListener] = (),
        serializer: SessionSerializer | None = None,
        sweep_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = SessionConfig.build(
            secret_key=(),
            route=route,
            max_inactive_interval=max_inactive_interval,
            max_lifetime=max_lifetime,
            max_active_sessions=max_active_sessions,
            detect_mutations=detect_mutations,
            static_filter=static_filter,
            sweep_interval=sweep_interval,
        )
        self._listeners = list(listeners)
        self._serializer = serializer
        self._clock = clock
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> ReplicatedSessionInterface:
        serializer = self._serializer or SessionSerializer()
        serializer.register(Markup, "markup", str, Markup, immutable=True)
        node = Node(
            self._config,
            listeners=self._listeners,
            serializer=serializer,
            session_class=FlaskSession,
            clock=self._clock,
        )
        interface = ReplicatedSessionInterface(node)
        app.session_interface = interface
        app.extensions["replisession"] = interface
        app.teardown_request(interface.release_unsaved)
        app.register_error_handler(TooManySessionsError, _too_many_sessions)
        node.start()
        return interface


def _too_many_sessions(exc: TooManySessionsError) -> tuple[str, int, dict[str, str]]:
    return (
        "503 Service Unavailable: the server holds too many sessions; try again later.\n",
        503,
        {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "60"},
    )
