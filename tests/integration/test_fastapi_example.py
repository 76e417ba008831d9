"""The FastAPI example under a real uvicorn on loopback, configured only by REPLISESSION_* variables."""

from __future__ import annotations

import json
import re

import pytest

from .servers import BIN, free_port, request, serving

pytestmark = pytest.mark.integration

COOKIE = re.compile(r"JSESSIONID=([A-Za-z0-9_-]{67}\.edge1); path=/; httponly; samesite=lax")


def test_fastapi_example_under_uvicorn() -> None:
    port = free_port()
    command = [
        str(BIN / "uvicorn"),
        "app:app",
        "--app-dir",
        "examples/fastapi_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {"REPLISESSION_SECRET_KEY": "integration-secret", "REPLISESSION_ROUTE": "edge1"}
    with serving(command, port, env):
        status, headers, body = request(port, "POST", "/cart?item=book")
        assert status == 200
        match = COOKIE.fullmatch(headers["set-cookie"])
        assert match is not None, headers["set-cookie"]
        cookie = match.group(1)
        state = json.loads(body)
        assert (state["route"], state["cart"], state["session_id"]) == ("edge1", ["book"], cookie[:24])

        status, headers, body = request(port, "POST", "/cart?item=pen", cookie)
        assert "set-cookie" not in headers
        assert json.loads(body)["cart"] == ["book", "pen"]

        status, headers, body = request(port, "POST", "/login?user=alice", cookie)
        rotated = COOKIE.fullmatch(headers["set-cookie"])
        assert rotated is not None
        assert rotated.group(1)[:24] != cookie[:24]
        state = json.loads(body)
        assert (state["user"], state["cart"]) == ("alice", ["book", "pen"])
        assert json.loads(request(port, "GET", "/api/state", cookie)[2])["cart"] == []

        status, headers, _ = request(port, "GET", "/static/app.css", rotated.group(1))
        assert (status, "set-cookie" in headers, "vary" in headers) == (200, False, False)
