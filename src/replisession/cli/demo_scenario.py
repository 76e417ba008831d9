"""The demo's script: a shopper, the member that owns the session killed, and nothing lost.

Every step is one HTTP request through the balancer, as a browser would make it,
printed with the member that served it and how long it took.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .demo_cluster import DemoCluster
from .status import StatusError

__all__ = ["Browser", "run_scenario"]

_COOKIE = re.compile(r"JSESSIONID=([^;]*)")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    set_cookie: str | None  # the JSESSIONID value a Set-Cookie carried, if any
    ms: float

    @property
    def cookie_route(self) -> str | None:
        return self.set_cookie.rpartition(".")[2] if self.set_cookie and "." in self.set_cookie else None


class Browser:
    """One client talking to the balancer, keeping the JSESSIONID cookie it is given."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.cookie: str | None = None

    def call(self, method: str, path: str) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        headers = {"Cookie": f"JSESSIONID={self.cookie}"} if self.cookie else {}
        started = time.perf_counter()
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        ms = (time.perf_counter() - started) * 1000
        set_cookie = None
        for value in response.headers.get_all("Set-Cookie") or ():
            match = _COOKIE.match(value)
            if match:
                set_cookie = match.group(1) or None
        if set_cookie is not None:
            self.cookie = set_cookie
        try:
            body = json.loads(raw) if response.status == 200 else {}
        except ValueError:
            body = {}
        return Reply(response.status, body if isinstance(body, dict) else {}, set_cookie, ms)


def run_scenario(cluster: DemoCluster, balancer_port: int, say: Callable[[str], None]) -> bool:
    """Run the script against the balancer; True when nothing was lost and the route changed."""
    browser = Browser(balancer_port)
    say("Scenario: every step is one request through the balancer, as a browser makes it.")

    def step(number: int, title: str, method: str, path: str) -> Reply:
        reply = browser.call(method, path)
        served = f"{reply.body.get('route', '?')} (pid {reply.body.get('pid', '?')})" if reply.body else "-"
        say(f"  {number}. {title:<24} {method} {path:<22} {reply.status} from {served:<18} {reply.ms:7.1f} ms")
        return reply

    login = step(1, "log in as alice", "POST", "/login?user=alice")
    step(2, "add a book to the cart", "POST", "/cart?item=book")
    third = step(3, "add a pen to the cart", "POST", "/cart?item=pen")
    owner_route = login.cookie_route
    if login.status != 200 or third.status != 200 or owner_route is None or browser.cookie is None:
        say("The shop did not answer as expected; see the members' logs.")
        return False
    before = {"user": third.body["user"], "cart": third.body["cart"]}
    say(f"     session: user {before['user']!r}, cart {before['cart']!r}")
    say(
        f"  The session belongs to {owner_route}: its cookie JSESSIONID=…{browser.cookie[-12:]} ends in "
        f"'.{owner_route}', so the balancer sends all its requests there."
    )

    owner = cluster.by_route(owner_route)
    killed_at = time.perf_counter()
    owner.kill()
    say(f"  4. kill -9 {owner_route} (pid {owner.pid}): the member that owns the session dies, as in a crash")

    after = step(5, "look at the session", "GET", "/api/state")
    after_kill_ms = (time.perf_counter() - killed_at) * 1000
    new_route = after.cookie_route
    if new_route is not None:
        say(f"     Set-Cookie: JSESSIONID=…{after.set_cookie[-12:] if after.set_cookie else ''} (route {new_route})")
    fourth = step(6, "add a cup to the cart", "POST", "/cart?item=cup")

    kept = after.status == 200 and {"user": after.body.get("user"), "cart": after.body.get("cart")} == before
    continued = fourth.status == 200 and fourth.body.get("cart") == [*before["cart"], "cup"]
    rerouted = new_route is not None and new_route != owner_route and new_route == after.body.get("route")
    if not (kept and continued and rerouted):
        say(
            f"Something went wrong: before the kill {before!r}, after it "
            f"{ {'user': after.body.get('user'), 'cart': after.body.get('cart')}!r}, cookie route {new_route!r}."
        )
        return False
    say("")
    say(
        f"Result: nothing lost. User {before['user']!r} and cart {before['cart']!r} survived the SIGKILL of "
        f"{owner_route}; the cookie's route changed {owner_route} -> {new_route} on the first response after "
        f"the kill ({after_kill_ms:.1f} ms after it), and the session goes on there."
    )
    _show_what_members_saw(cluster, owner_route, say)
    return True


def _show_what_members_saw(cluster: DemoCluster, dead: str, say: Callable[[str], None]) -> None:
    """The survivors' view: the dead member removed, and the INFO lines they logged about it."""
    survivors = [member for member in cluster.members if member.alive]

    def removed() -> bool:
        try:
            return all(dead not in {m["route"] for m in member.report()["members"]} for member in survivors)
        except StatusError:
            return False

    if cluster.wait_until(removed, deadline=10.0):
        say(f"{' and '.join(m.route for m in survivors)} removed {dead} from the cluster. What they logged:")
    else:
        say(f"The survivors still list {dead} (not removed within 10 s). What they logged:")
    for member in survivors:
        for line in member.log_lines("member left", "failover:"):
            say(f"  {member.route}| {line}")
