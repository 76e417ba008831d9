"""A small Flask shop whose sessions live in replisession.

Configured only by the environment (nothing in this file names a key or a route):

    REPLISESSION_SECRET_KEY=change-me REPLISESSION_ROUTE=node1 \
        flask --app examples/flask_app/app.py run --port 8002

    REPLISESSION_SECRET_KEY=change-me REPLISESSION_ROUTE=node1 \
        gunicorn --chdir examples/flask_app app:app --bind 127.0.0.1:8002

- ``POST /login?user=NAME``: logs in, rotates the session id (fixation protection) and flashes a message;
- ``POST /logout``: invalidates the session;
- ``POST /cart?item=NAME``: appends to a list *in place* (``session["cart"].append``);
- ``POST /counter``: counts this session's clicks;
- ``GET /api/state``: the session as JSON, with the route and id that served it;
- ``GET /``: a page showing all of the above, and the flashed messages.

The actions answer with the state as JSON, or, for the page's HTML forms, with a
redirect back to the page. ``REPLISESSION_SECRET_KEY`` becomes Flask's
``SECRET_KEY``; every other setting (``REPLISESSION_ROUTE``,
``REPLISESSION_MAX_INACTIVE_INTERVAL``) is read by ``ReplicatedSession`` itself.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, flash, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from replisession import ConfigError
from replisession.flask import ReplicatedSession

app = Flask(__name__)
app.secret_key = os.environ.get("REPLISESSION_SECRET_KEY")
if not app.secret_key:
    raise ConfigError("REPLISESSION_SECRET_KEY is not set: export it (the same value on every member) and start again")
sessions = ReplicatedSession(app)  # the route and the idle timeout come from REPLISESSION_* variables
ROUTE = app.extensions["replisession"].node.config.route or ""


def state() -> dict[str, Any]:
    return {
        "route": ROUTE,
        "pid": os.getpid(),
        "session_id": getattr(session, "id", None),
        "user": session.get("user"),
        "cart": session.get("cart", []),
        "counter": session.get("counter", 0),
    }


def answer() -> ResponseReturnValue:
    """The state as JSON for API clients; a redirect to the page for its HTML forms."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return redirect(url_for("home"))
    return jsonify(state())


@app.get("/api/state")
def api_state() -> ResponseReturnValue:
    return jsonify(state())


@app.post("/login")
def login() -> ResponseReturnValue:
    user = request.values.get("user", "").strip()
    if not user:
        return jsonify(error="user is required"), 400
    session.rotate_id()  # a new id on login: a planted id is useless
    session["user"] = user
    flash(f"Logged in as {user}.")
    return answer()


@app.post("/logout")
def logout() -> ResponseReturnValue:
    session.invalidate()
    return answer()


@app.post("/cart")
def add_to_cart() -> ResponseReturnValue:
    item = request.values.get("item", "").strip()
    if not item:
        return jsonify(error="item is required"), 400
    session.setdefault("cart", []).append(item)  # in place: replisession notices
    return answer()


@app.post("/counter")
def count() -> ResponseReturnValue:
    session["counter"] = session.get("counter", 0) + 1
    return answer()


@app.get("/")
def home() -> ResponseReturnValue:
    return render_template("index.html", state=state())
