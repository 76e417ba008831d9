"""Flask integration: ``flask.session`` kept on the server and replicated.

``ReplicatedSession(app)`` (or ``ReplicatedSession().init_app(app)``) installs a
:class:`flask.sessions.SessionInterface` that honours Flask's own settings:
``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` sign the id (a cookie verified by a
fallback key is re-signed with the current one when the session is used), the
``SESSION_COOKIE_*`` keys (and ``APPLICATION_ROOT``) shape the cookie,
``PERMANENT_SESSION_LIFETIME`` is a permanent session's cookie expiry and idle
timeout, and ``SESSION_REFRESH_EACH_REQUEST`` re-sends a permanent session's
cookie on requests that use the session (a change to a session whose app sets
``permanent`` re-sends it too, as Flask does). Without a secret key Flask's
``NullSession`` is used, as with Flask's own interface. The app's own static
route, like the URLs of the static filter, never loads or creates a session.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import flask
from flask.sessions import SessionInterface, SessionMixin
from markupsafe import Markup

from ..cluster_config import ClusterConfig
from ..config import DEFAULT_STATIC_FILTER, UNSET, SessionConfig
from ..core.listeners import SessionListener
from ..core.serializer import SessionSerializer
from ..core.session import Session
from ..errors import TooManySessionsError
from ..node import ClusterListener, Node
from .cookie import SessionCookieCodec
from .front import NOT_REPLICATED, TOO_MANY_SESSIONS, CookieAction, Fetch, RequestSession, SessionFront, build_node
from .metrics import MetricsEndpoint, wsgi_metrics

if TYPE_CHECKING:
    from flask.wrappers import Request, Response

__all__ = ["FlaskSession", "ReplicatedSession", "ReplicatedSessionInterface"]

_HELD = "replisession.held"
_FLASK_DEFAULT_COOKIE_NAME = "session"


class FlaskSession(Session, SessionMixin):
    """A replisession :class:`~replisession.Session` with Flask's ``permanent`` flag.

    A permanent session's idle timeout is ``PERMANENT_SESSION_LIFETIME`` (unless the
    app set one on the session); it follows the replicated ``_permanent`` key, so
    every member computes the same.
    """

    #: PERMANENT_SESSION_LIFETIME in seconds; each app's interface sets it on its own subclass.
    permanent_lifetime: float | None = None

    def _default_max_inactive_interval(self) -> float | None:
        if self.permanent_lifetime is not None and dict.get(self, "_permanent"):
            return self.permanent_lifetime
        return super()._default_max_inactive_interval()


class ReplicatedSessionInterface(SessionInterface):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.session_class: type[FlaskSession] = node.store.session_class  # type: ignore[assignment]
        self.front = SessionFront(node, None)
        self._codecs: dict[tuple[Any, ...], SessionCookieCodec] = {}
        self._static_prefix: str | None = None  # this interface's app's, found on first use

    def close(self) -> None:
        """Stop this member's timer (tests, and servers that shut apps down)."""
        self.node.stop()

    def get_cookie_name(self, app: flask.Flask) -> str:
        """``SESSION_COOKIE_NAME``, except that Flask's default ``session`` becomes Tomcat's ``JSESSIONID``.

        Balancer configurations written for Tomcat stick on ``JSESSIONID``.
        """
        name: str = app.config["SESSION_COOKIE_NAME"]
        return "JSESSIONID" if name == _FLASK_DEFAULT_COOKIE_NAME else name

    def codec(self, app: flask.Flask) -> SessionCookieCodec:
        """The cookie codec for the app's current keys (newest first, then the fallbacks)."""
        # Flask's default for SECRET_KEY_FALLBACKS is None; its own signer tries the list's
        # last entry first, so the fallbacks go newest first after the current key.
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or ()
        keys = tuple(k if isinstance(k, str | bytes) else str(k) for k in (app.secret_key, *reversed(fallbacks)) if k)
        codec = self._codecs.get(keys)
        if codec is None:
            # Bytes keys stay bytes, as Flask's own signer takes them: a key from
            # os.urandom() is not UTF-8.
            codec = self._codecs[keys] = SessionCookieCodec(keys, self.node.config.route)
        return codec

    def open_session(self, app: flask.Flask, request: Request) -> SessionMixin | None:
        if not app.secret_key:
            return None
        if self._static_prefix is None:
            self._static_prefix = _flask_static_prefix(app)
        if self._static_prefix and request.path.startswith(self._static_prefix):
            return self.front.static_session()  # type: ignore[return-value]
        lifetime = app.permanent_session_lifetime.total_seconds()
        if self.session_class.permanent_lifetime != lifetime:
            self.session_class.permanent_lifetime = lifetime
        cookies = request.cookies.getlist(self.get_cookie_name(app))
        held = self.front.open(request.path, cookies, self.codec(app))
        if isinstance(held, Fetch):  # another member has the newest copy: get it first
            held.wait()
            held = self.front.open(request.path, cookies, self.codec(app), fetched=True)
            assert not isinstance(held, Fetch)
        if held is None:
            return self.front.static_session()  # type: ignore[return-value]
        request.environ[_HELD] = held
        return held.session  # type: ignore[return-value]

    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None:
        held: RequestSession | None = flask.request.environ.pop(_HELD, None)
        if held is None or held.session is not session:
            return
        assert isinstance(session, FlaskSession)
        if session._refused:
            # The view (or its own error handling) answered after a refused new session:
            # answer 503 as the other adapters do, not a page that claims it worked.
            _refuse(response)
        # Flask re-sends the cookie when the session was modified, or on every request
        # when it is permanent and SESSION_REFRESH_EACH_REQUEST is on. The value here
        # never changes with the data, so a modification matters only where the app
        # manages `permanent`: Expires slides, or is added or dropped with the flag.
        resend = "_permanent" in session and self.should_set_cookie(app, session)
        action = self.front.close(held, 0.0 if resend else None)
        replication = self.front.replication()
        if replication is not None and replication.failed(replication.outcomes()):
            _refuse(response, _UNREPLICATED)  # send_failure=fail: the write is not acknowledged
            return
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
        cluster: ClusterConfig | None = None,
        cluster_listeners: Iterable[ClusterListener] = (),
        metrics_path: str | None = UNSET,
    ) -> None:
        self._options: dict[str, Any] = {
            "route": route,
            "max_inactive_interval": max_inactive_interval,
            "max_lifetime": max_lifetime,
            "max_active_sessions": max_active_sessions,
            "static_filter": static_filter,
            "detect_mutations": detect_mutations,
            "listeners": list(listeners),
            "sweep_interval": sweep_interval,
            "clock": clock,
            "cluster": cluster,
            "cluster_listeners": list(cluster_listeners),
            "metrics_path": metrics_path,
        }
        self._serializer = serializer
        SessionConfig.build(secret_key=(), **_session_settings(self._options))  # invalid settings fail here
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> ReplicatedSessionInterface:
        serializer = self._serializer or SessionSerializer()
        serializer.register(Markup, "markup", str, Markup, immutable=True)
        session_class = type("FlaskSession", (FlaskSession,), {"__module__": __name__})
        # Flask holds the keys (SECRET_KEY); the cookie settings come from its config per request.
        node = build_node(
            secret_key=(), cookie=None, session_class=session_class, serializer=serializer, **self._options
        )
        interface = ReplicatedSessionInterface(node)
        app.session_interface = interface
        app.extensions["replisession"] = interface
        app.teardown_request(interface.release_unsaved)
        app.register_error_handler(TooManySessionsError, _too_many_sessions)
        if node.config.metrics_path is not None:  # served before Flask opens a session
            endpoint = MetricsEndpoint(node, node.config.metrics_path)
            app.wsgi_app = wsgi_metrics(endpoint, app.wsgi_app)  # type: ignore[method-assign, assignment]
        node.start()
        return interface


def _flask_static_prefix(app: flask.Flask) -> str:
    """The URL prefix of the app's own static route ("" for none): its files never touch
    sessions, whatever their extension. Worked out once: it costs a path join."""
    prefix = app.static_url_path
    return f"{prefix}/" if app.has_static_folder and prefix else ""


_503_BODY = TOO_MANY_SESSIONS.decode()
_UNREPLICATED = NOT_REPLICATED.decode()
_503_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "60"}


def _too_many_sessions(exc: TooManySessionsError) -> tuple[str, int, dict[str, str]]:
    return _503_BODY, 503, dict(_503_HEADERS)


def _refuse(response: Response, body: str = _503_BODY) -> None:
    """Turn whatever the app answered into a 503 (a refused new session, an unreplicated write)."""
    close = getattr(response.response, "close", None)
    if close is not None:
        close()  # the app's body, e.g. an open file, is not sent
    response.status_code = 503
    response.headers.clear()
    response.headers.update(_503_HEADERS)
    response.set_data(body)


def _session_settings(options: dict[str, Any]) -> dict[str, Any]:
    names = ("route", "max_inactive_interval", "max_lifetime", "max_active_sessions", "static_filter")
    return {name: options[name] for name in (*names, "detect_mutations", "sweep_interval", "metrics_path")}
