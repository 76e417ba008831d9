"""The opt-in metrics endpoint of every adapter: off by default, JSON and Prometheus text,
served in front of the session layer (no session, no cookie), settings validated."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import flask
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from replisession import ConfigError, SessionMiddleware
from replisession.flask import ReplicatedSession
from replisession.node.metrics import COUNTERS
from replisession.node.report import TRANSPORT_COUNTERS, prometheus
from replisession.testing import FakeClock
from replisession.wsgi import SessionMiddleware as WSGIMiddleware

SECRET = "metrics-test-secret"
PATH = "/replisession/metrics"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
ALL_COUNTERS = {**dict.fromkeys(COUNTERS, 0), **dict.fromkeys(TRANSPORT_COUNTERS, 0)}


# -- a strict reader of the Prometheus text format (0.0.4) -------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
Samples = dict[str, list[tuple[str, dict[str, str], float]]]


def parse_prometheus(text: str) -> tuple[dict[str, str], Samples]:
    """Every metric's type, and its samples as (sample name, labels, value); asserts the format:
    HELP then TYPE before a metric's samples, every sample belonging to the metric declared last,
    counters named *_total and never negative, histogram buckets cumulative up to +Inf == _count."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert name not in helps, line
            assert help_text, line
            helps.add(name)
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE ") :].split(" ")
            assert name in helps, f"TYPE before HELP: {line}"
            assert name not in types, line
            assert kind in ("counter", "gauge", "histogram"), line
            assert name.startswith("replisession_"), line
            types[name], current = kind, name
            samples[name] = []
        else:
            match = _SAMPLE.fullmatch(line)
            assert match is not None, line
            name, label_text, value_text = match.groups()
            labels = dict(_LABEL.findall(label_text or ""))
            assert ",".join(f'{k}="{v}"' for k, v in _LABEL.findall(label_text or "")) == (label_text or ""), line
            assert current is not None
            suffix = name[len(current) :]
            allowed = ("_bucket", "_sum", "_count") if types[current] == "histogram" else ("",)
            assert name.startswith(current), f"{line!r} outside {current}"
            assert suffix in allowed, f"{line!r} outside {current}"
            samples[current].append((name, labels, float(value_text)))
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total")
            assert all(value >= 0 for _, _, value in samples[name])
        if kind == "histogram":
            buckets = [(labels["le"], value) for sample, labels, value in samples[name] if sample.endswith("_bucket")]
            bounds = [math.inf if le == "+Inf" else float(le) for le, _ in buckets]
            assert bounds == sorted(bounds)
            assert bounds[-1] == math.inf
            counts = [value for _, value in buckets]
            assert counts == sorted(counts), "buckets are cumulative"
            count = next(value for sample, _, value in samples[name] if sample.endswith("_count"))
            assert counts[-1] == count
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the one sample named ``replisession_<name>`` with exactly these labels."""
    found = [
        v
        for metric in samples.values()
        for sample, got, v in metric
        if sample == f"replisession_{name}" and got == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- apps ---------------------------------------------------------------------------------------


async def write(request: Request) -> PlainTextResponse:
    for key, item in request.query_params.items():
        request.session[key] = item
    return PlainTextResponse("ok")


async def end(request: Request) -> PlainTextResponse:
    request.session.invalidate()
    return PlainTextResponse("ended")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/write", write), Route("/end", end)])


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPLISESSION_METRICS_PATH", "REPLISESSION_MEMBERS", "REPLISESSION_MULTICAST", "REPLISESSION_ROUTE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make(clock: FakeClock) -> Iterator[Callable[..., SessionMiddleware]]:
    made: list[SessionMiddleware] = []

    def factory(**options: Any) -> SessionMiddleware:
        middleware = SessionMiddleware(starlette_app(), secret_key=SECRET, route="node1", clock=clock, **options)
        made.append(middleware)
        return middleware

    yield factory
    for middleware in made:
        middleware.node.stop()


# -- ASGI -------------------------------------------------------------------------------------


def test_the_metrics_path_is_off_by_default(make: Callable[..., SessionMiddleware]) -> None:
    middleware = make()
    assert middleware.node.config.metrics_path is None
    assert middleware.metrics_endpoint is None
    response = TestClient(middleware).get(PATH)
    assert response.status_code == 404  # the app's own answer: nothing was served in front of it
    assert response.text == "Not Found"


def test_the_json_report_of_a_member_without_a_cluster(
    make: Callable[..., SessionMiddleware], clock: FakeClock
) -> None:
    middleware = make(metrics_path=PATH, max_inactive_interval=60)
    client = TestClient(middleware)
    kept, ended, idle = TestClient(middleware), TestClient(middleware), TestClient(middleware)
    for browser in (kept, ended, idle):
        assert browser.get("/write?a=1").text == "ok"
    ended.get("/end")
    clock.advance(40)
    kept.get("/write?a=2")  # used: kept alive
    clock.advance(25)
    middleware.node.sweep()  # the idle one expires
    sessions_before = len(middleware.store)

    response = client.get(PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert "vary" not in response.headers
    assert len(middleware.store) == sessions_before == 1  # the report touched no session
    report = response.json()
    assert report["member"] == {
        "route": "node1",
        "address": None,
        "incarnation": None,
        "cluster": None,
        "send_mode": None,
        "running": True,
    }
    assert report["members"] == []
    assert report["sessions"] == {"primary": 1, "replica": 0, "created": 3, "expired": 1, "invalidated": 1}
    assert report["counters"] == ALL_COUNTERS
    assert report["lag"]["count"] == 0
    assert report["lag"]["p50"] is None
    assert report["lag"]["p99"] is None
    assert list(report["lag"]["buckets"])[-1] == "+Inf"
    assert set(report["lag"]["buckets"].values()) == {0}


def test_prometheus_text_by_suffix_by_query_and_by_accept(make: Callable[..., SessionMiddleware]) -> None:
    middleware = make(metrics_path=PATH)
    client = TestClient(middleware)
    client.get("/write?a=1")
    bodies = []
    for url, headers in (
        (f"{PATH}/prometheus", {}),
        (f"{PATH}?format=prometheus", {}),
        (PATH, {"Accept": "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"}),
        (PATH, {"Accept": "application/openmetrics-text;version=1.0.0"}),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == PROMETHEUS
        assert "set-cookie" not in response.headers
        bodies.append(response.text)
    assert len(set(bodies)) == 1
    types, samples = parse_prometheus(bodies[0])
    assert types["replisession_sessions"] == "gauge"
    assert types["replisession_replication_lag_seconds"] == "histogram"
    assert value(samples, "sessions", state="primary") == 1
    assert value(samples, "sessions", state="replica") == 0
    assert value(samples, "sessions_created_total") == 1
    assert value(samples, "member_info", route="node1", address="", incarnation="") == 1
    assert value(samples, "replication_lag_seconds_count") == 0
    for name in ALL_COUNTERS:
        assert types[f"replisession_{name}_total"] == "counter"
    # JSON wins whenever it is asked for.
    for url, headers in ((f"{PATH}/prometheus?format=json", {}), (PATH, {"Accept": "application/json, text/plain"})):
        assert client.get(url, headers=headers).headers["content-type"] == "application/json"


def test_only_get_and_head_and_known_formats(make: Callable[..., SessionMiddleware]) -> None:
    client = TestClient(make(metrics_path=PATH))
    head = client.head(PATH)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    post = client.post(PATH)
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    bad = client.get(f"{PATH}?format=xml")
    assert (bad.status_code, bad.text) == (400, "400 Bad Request: format must be json or prometheus.\n")
    assert client.get(f"{PATH}/other").status_code == 404  # only the path and its /prometheus


def test_the_path_comes_from_the_environment_and_an_argument_wins(
    make: Callable[..., SessionMiddleware], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLISESSION_METRICS_PATH", "/ops/metrics")
    assert TestClient(make()).get("/ops/metrics").json()["member"]["route"] == "node1"
    assert make(metrics_path=None).metrics_endpoint is None
    assert make(metrics_path="/other").node.config.metrics_path == "/other"
    monkeypatch.setenv("REPLISESSION_METRICS_PATH", "  ")
    assert make().metrics_endpoint is None  # blank means unset


@pytest.mark.parametrize("path", ["metrics", "/", "/metrics/", "//metrics", "/a?b", "/a#b", "/a b", "", 42])
def test_an_invalid_metrics_path_fails_at_start_naming_its_source(
    path: Any, make: Callable[..., SessionMiddleware], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"metrics_path .* is not a URL path for the metrics: start it with '/'"):
        make(metrics_path=path)
    if isinstance(path, str) and path.strip():
        monkeypatch.setenv("REPLISESSION_METRICS_PATH", path)
        with pytest.raises(ConfigError, match=r"REPLISESSION_METRICS_PATH .* is not a URL path"):
            make()


def test_label_values_and_help_are_escaped() -> None:
    report: dict[str, Any] = {
        "member": {"route": 'a"b', "address": "x\\y", "incarnation": "line\nbreak"},
        "members": [],
        "sessions": {"primary": 0, "replica": 0, "created": 0, "expired": 0, "invalidated": 0},
        "counters": ALL_COUNTERS,
        "lag": {"count": 0, "sum": 0.0, "buckets": {"0.001": 0, "+Inf": 0}},
    }
    text = prometheus(report)
    assert 'replisession_member_info{route="a\\"b",address="x\\\\y",incarnation="line\\nbreak"} 1\n' in text
    _, samples = parse_prometheus(text)
    assert value(samples, "member_info", route='a\\"b', address="x\\\\y", incarnation="line\\nbreak") == 1


# -- WSGI and Flask ---------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["replisession.session"]["seen"] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def call_wsgi(app: Any, path: str, query: str = "", accept: str = "") -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured.update(status=status, headers=dict(headers))

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "HTTP_ACCEPT": accept}
    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def test_the_wsgi_middleware_serves_the_metrics_before_any_session() -> None:
    off = WSGIMiddleware(wsgi_app, secret_key=SECRET, route="w1")
    on = WSGIMiddleware(wsgi_app, secret_key=SECRET, route="w1", metrics_path=PATH)
    try:
        status, headers, body = call_wsgi(off, PATH)
        assert (status, body) == ("200 OK", b"app")  # off: the app answered, and made a session
        assert "Set-Cookie" in headers
        status, headers, body = call_wsgi(on, PATH)
        assert status == "200 OK"
        assert headers["Content-Type"] == "application/json"
        assert "Set-Cookie" not in headers
        report = json.loads(body)
        assert report["member"]["route"] == "w1"
        assert report["sessions"]["created"] == 0
        status, headers, body = call_wsgi(on, f"{PATH}/prometheus")
        assert headers["Content-Type"] == PROMETHEUS
        parse_prometheus(body.decode())
        assert call_wsgi(on, PATH, accept="text/plain")[1]["Content-Type"] == PROMETHEUS
        assert len(on.store) == 0
    finally:
        off.close()
        on.close()


def test_the_flask_extension_serves_the_metrics_before_flask_opens_a_session() -> None:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)
    opened: list[str] = []

    @app.route("/write")
    def write_view() -> str:
        flask.session["a"] = 1
        return "ok"

    interface = ReplicatedSession(route="f1", metrics_path=PATH).init_app(app)
    original_open = interface.open_session

    def counting_open(*args: Any) -> Any:
        opened.append(flask.request.path)
        return original_open(*args)

    interface.open_session = counting_open  # type: ignore[method-assign]
    try:
        client = app.test_client()
        client.get("/write")
        response = client.get(PATH)
        assert response.status_code == 200
        assert response.content_type == "application/json"
        assert "Set-Cookie" not in response.headers
        assert "Vary" not in response.headers
        assert response.get_json()["sessions"] == {
            "primary": 1,
            "replica": 0,
            "created": 1,
            "expired": 0,
            "invalidated": 0,
        }
        prometheus_response = client.get(f"{PATH}/prometheus")
        assert prometheus_response.content_type == PROMETHEUS
        parse_prometheus(prometheus_response.get_data(as_text=True))
        assert opened == ["/write"]  # never for the metrics
    finally:
        interface.node.stop()
    with pytest.raises(ConfigError, match="metrics_path 'metrics'"):
        ReplicatedSession(metrics_path="metrics")
