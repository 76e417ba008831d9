"""A small FastAPI shop whose sessions live in replisession.

Configured only by the environment (nothing in this file names a key or a route):

    REPLISESSION_SECRET_KEY=change-me REPLISESSION_ROUTE=node1 \
        uvicorn app:app --app-dir examples/fastapi_app --port 8001

- ``POST /login?user=NAME``: logs in and rotates the session id (fixation protection);
- ``POST /logout``: invalidates the session;
- ``POST /cart?item=NAME``: appends to a list *in place* (``session["cart"].append``);
- ``POST /counter``: counts this session's clicks;
- ``GET /api/state``: the session as JSON, with the route and id that served it;
- ``GET /``: a page showing all of the above.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from replisession import SessionMiddleware

ROUTE = os.environ.get("REPLISESSION_ROUTE", "")

app = FastAPI(title="replisession FastAPI example")
app.add_middleware(SessionMiddleware)  # every setting comes from REPLISESSION_* variables
app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")


def state(request: Request) -> dict[str, Any]:
    session = request.session
    return {
        "route": ROUTE,
        "pid": os.getpid(),
        "session_id": getattr(session, "id", None),
        "user": session.get("user"),
        "cart": session.get("cart", []),
        "counter": session.get("counter", 0),
    }


@app.get("/api/state")
async def api_state(request: Request) -> dict[str, Any]:
    return state(request)


@app.post("/login")
async def login(request: Request, user: str) -> dict[str, Any]:
    request.session.rotate_id()  # a new id on login: a planted id is useless
    request.session["user"] = user
    return state(request)


@app.post("/logout")
async def logout(request: Request) -> dict[str, Any]:
    request.session.invalidate()
    return state(request)


@app.post("/cart")
async def add_to_cart(request: Request, item: str) -> dict[str, Any]:
    request.session.setdefault("cart", []).append(item)  # in place: replisession notices
    return state(request)


@app.post("/counter")
async def count(request: Request) -> dict[str, Any]:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return state(request)


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    return (Path(__file__).parent / "index.html").read_text()
