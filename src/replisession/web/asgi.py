"""ASGI middleware: a drop-in for ``starlette.middleware.sessions.SessionMiddleware``.

It takes every keyword argument of Starlette's (same meanings) and puts a
:class:`~replisession.Session` at ``scope["session"]``, so ``request.session``
works unchanged in Starlette and FastAPI. The data stays on the server; the
cookie carries only the signed id and this member's route.

Defaults that differ from Starlette's follow Tomcat: the cookie is
``JSESSIONID`` and has no Max-Age (a browser-session cookie); the server keeps
an idle session for ``max_inactive_interval`` = 1800 s. With ``max_age`` set,
the idle timeout is at most ``max_age`` (``max_age <= 0``: the session is
already expired on the next request).
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from ..errors import TooManySessionsError
from .cookie import cookie_values
from .front import NOT_REPLICATED, TOO_MANY_SESSIONS, Fetch, RequestSession, SessionAdapter
from .metrics import asgi_headers, header

__all__ = ["SessionMiddleware"]


class SessionMiddleware(SessionAdapter):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        endpoint = self.metrics_endpoint
        if endpoint is not None and kind == "http" and endpoint.matches(scope.get("path", "")):
            response = endpoint.respond(
                scope.get("method", "GET"),
                scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
                header(scope, b"accept"),
            )
            await send({"type": "http.response.start", "status": response.status, "headers": asgi_headers(response)})
            await send({"type": "http.response.body", "body": response.body})
            return

        path, cookies = scope.get("path", ""), _scope_cookie_values(scope, self.cookie.name)
        held = self.front.open(path, cookies)
        if isinstance(held, Fetch):  # another member has the newest copy: get it first
            await held.wait_async()
            held = self.front.open(path, cookies, fetched=True)
            assert not isinstance(held, Fetch)
        if held is None:
            scope["session"] = self.front.static_session()
            await self.app(scope, receive, send)
            return
        scope["session"] = held.session
        if kind == "websocket":  # a websocket can use the session but cannot set a cookie
            try:
                await self.app(scope, receive, send)
            finally:
                self._close_websocket(held)
            return

        started = refused = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started, refused
            if refused:
                return  # the app's body of a response we replaced with 503
            if message["type"] == "http.response.start":
                started = True
                if held.session._refused:
                    # The app (or an exception handler inside it, such as Starlette's
                    # ServerErrorMiddleware) answered after a refused new session.
                    refused = True
                    self.front.close(held)
                    await _send_503(send)
                    return
                vary, set_cookie = self.response_cookie(held)
                replication = self.front.replication()
                if replication is not None and replication.failed(await replication.outcomes_async()):
                    refused = True  # send_failure=fail: the write is not acknowledged
                    await _send_503(send, NOT_REPLICATED)
                    return
                headers = message["headers"] = list(message.get("headers", ()))
                if vary:
                    _add_vary_cookie(headers)
                if set_cookie is not None:
                    headers.append((b"set-cookie", set_cookie.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except TooManySessionsError:
            if not started:
                await _send_503(send)
            elif not refused:
                raise
        finally:
            self.front.close(held)

    def _close_websocket(self, held: RequestSession) -> None:
        session = held.session
        if held.cookie_id is None and session.id is not None:
            # No cookie can reach the browser over a websocket: a session begun
            # here could never be found again, so do not keep it.
            session.invalidate()
        self.front.close(held)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.node.start_async()
            elif message["type"] == "lifespan.shutdown":
                await self.node.stop_async()
            return message

        return wrapped


def _scope_cookie_values(scope: Scope, name: str) -> list[str]:
    values: list[str] = []
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            values.extend(cookie_values(value.decode("latin-1"), name))
    return values


def _add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    for index, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            if b"cookie" not in value.lower():
                headers[index] = (key, value + b", Cookie")
            return
    headers.append((b"vary", b"Cookie"))


async def _send_503(send: Send, body: bytes = TOO_MANY_SESSIONS) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"60"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
