"""WSGI middleware: server-side sessions for any WSGI application.

The session is at ``environ["replisession.session"]``; it marks itself accessed
when read (no framework does it here), which drives ``Vary: Cookie`` and the
idle-timeout touch. Takes the same arguments as the ASGI middleware.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..core.session import AccessTrackingSession
from ..errors import TooManySessionsError
from .cookie import cookie_values
from .front import NOT_REPLICATED, TOO_MANY_SESSIONS, Fetch, RequestSession, SessionAdapter, SessionFront
from .metrics import respond_wsgi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ENVIRON_KEY", "SessionMiddleware"]

ENVIRON_KEY = "replisession.session"
_503_STATUS = "503 Service Unavailable"


def _503_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), ("Retry-After", "60")]


class SessionMiddleware(SessionAdapter):
    session_class = AccessTrackingSession

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.node.start()  # a WSGI app has no lifespan: the member starts with the app

    def close(self) -> None:
        """Stop the member's timer (for servers that call it on shutdown, and tests)."""
        self.node.stop()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        endpoint = self.metrics_endpoint
        if endpoint is not None and endpoint.matches(environ.get("PATH_INFO", "")):
            return respond_wsgi(endpoint, environ, start_response)
        path, cookies = environ.get("PATH_INFO", ""), cookie_values(environ.get("HTTP_COOKIE", ""), self.cookie.name)
        held = self.front.open(path, cookies)
        if isinstance(held, Fetch):  # another member has the newest copy: get it first
            held.wait()
            held = self.front.open(path, cookies, fetched=True)
            assert not isinstance(held, Fetch)
        if held is None:
            environ[ENVIRON_KEY] = self.front.static_session()
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        environ[ENVIRON_KEY] = held.session
        state: dict[str, Any] = {"started": False, "refused": None}  # refused: the 503 body sent instead

        def session_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["started"] = True
            if held.session._refused:
                # The app (or its own error handling) answered after a refused new session.
                state["refused"] = TOO_MANY_SESSIONS
                self.front.close(held)
                return start_response(_503_STATUS, _503_headers(TOO_MANY_SESSIONS), exc_info)
            vary, set_cookie = self.response_cookie(held)
            replication = self.front.replication()
            if replication is not None and replication.failed(replication.outcomes()):
                state["refused"] = NOT_REPLICATED  # send_failure=fail: the write is not acknowledged
                return start_response(_503_STATUS, _503_headers(NOT_REPLICATED), exc_info)
            headers = list(headers)
            if vary:
                _add_vary_cookie(headers)
            if set_cookie is not None:
                headers.append(("Set-Cookie", set_cookie))
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, session_start_response)
        except TooManySessionsError:
            self.front.close(held)
            if state["started"] and not state["refused"]:
                raise
            if not state["started"]:
                start_response(_503_STATUS, _503_headers(TOO_MANY_SESSIONS))
            return [state["refused"] or TOO_MANY_SESSIONS]
        except BaseException:
            self.front.close(held)
            raise
        if state["refused"]:
            _close_result(result)
            return [state["refused"]]
        return _Closing(result, held, self.front, state)


class _Closing:
    """Passes the app's body through and releases the session if start_response never ran."""

    def __init__(
        self, result: Iterable[bytes], held: RequestSession, front: SessionFront, state: dict[str, Any]
    ) -> None:
        self._result = result
        self._held = held
        self._front = front
        self._state = state

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._result:
            refused = self._state["refused"]
            if refused:  # start_response ran during iteration and answered 503 instead
                yield refused
                return
            yield chunk

    def close(self) -> None:
        try:
            _close_result(self._result)
        finally:
            self._front.close(self._held)


def _close_result(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _add_vary_cookie(headers: list[tuple[str, str]]) -> None:
    for index, (key, value) in enumerate(headers):
        if key.lower() == "vary":
            if "cookie" not in value.lower():
                headers[index] = (key, f"{value}, Cookie")
            return
    headers.append(("Vary", "Cookie"))
