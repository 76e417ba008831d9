"""The opt-in metrics endpoint every adapter serves in front of the session layer.

``GET <path>`` answers the member's report as JSON; ``<path>/prometheus``,
``?format=prometheus`` or an ``Accept`` header that asks for ``text/plain`` (what a
Prometheus server sends) without ``application/json`` answers the Prometheus text
format. The request never loads, creates or touches a session. The report names
members' addresses, so the path is off unless configured; restrict it at the
balancer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..node import Node
from ..node.report import PROMETHEUS_CONTENT_TYPE, prometheus, snapshot

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["MetricsEndpoint", "MetricsResponse", "wsgi_metrics"]

_JSON = "application/json"
_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}


@dataclass(frozen=True, slots=True)
class MetricsResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {_REASONS[self.status]}"


class MetricsEndpoint:
    """Serves one node's report at ``path`` (JSON) and ``path + "/prometheus"``."""

    def __init__(self, node: Node, path: str) -> None:
        self.node = node
        self.path = path
        self.prometheus_path = f"{path}/prometheus"

    def matches(self, path: str) -> bool:
        return path == self.path or path == self.prometheus_path

    def respond(self, method: str, path: str, query: str = "", accept: str = "") -> MetricsResponse:
        if method not in ("GET", "HEAD"):
            return _text(405, "405 Method Not Allowed: the metrics are read with GET.\n", [("Allow", "GET, HEAD")])
        formats = parse_qs(query).get("format", [])
        if any(f not in ("json", "prometheus") for f in formats):
            return _text(400, "400 Bad Request: format must be json or prometheus.\n")
        if formats:
            wants_prometheus = formats[-1] == "prometheus"
        else:
            wants_prometheus = path == self.prometheus_path or _accepts_text(accept)
        if not self.node.running:
            self.node.start()  # the member starts on its first request, whichever it is
        report = snapshot(self.node)
        if wants_prometheus:
            body, content_type = prometheus(report).encode(), PROMETHEUS_CONTENT_TYPE
        else:
            body, content_type = json.dumps(report, indent=1).encode() + b"\n", _JSON
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        return MetricsResponse(200, headers, b"" if method == "HEAD" else body)


def _accepts_text(accept: str) -> bool:
    accept = accept.lower()
    return _JSON not in accept and ("text/plain" in accept or "application/openmetrics-text" in accept)


def _text(status: int, body: str, extra: Iterable[tuple[str, str]] = ()) -> MetricsResponse:
    data = body.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))), *extra]
    return MetricsResponse(status, headers, data)


def wsgi_metrics(endpoint: MetricsEndpoint, app: WSGIApplication) -> WSGIApplication:
    """``app`` with the metrics served in front of it (Flask: in front of its session interface)."""

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not endpoint.matches(path):
            return app(environ, start_response)
        return respond_wsgi(endpoint, environ, start_response)

    return serve


def respond_wsgi(endpoint: MetricsEndpoint, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    response = endpoint.respond(
        environ.get("REQUEST_METHOD", "GET"),
        environ.get("PATH_INFO", ""),
        environ.get("QUERY_STRING", ""),
        environ.get("HTTP_ACCEPT", ""),
    )
    start_response(response.status_line, response.headers)
    return [response.body]


def asgi_headers(response: MetricsResponse) -> list[tuple[bytes, bytes]]:
    return [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in response.headers]


def header(scope: Mapping[str, Any], name: bytes) -> str:
    """The first value of an ASGI request header, or ""."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""
