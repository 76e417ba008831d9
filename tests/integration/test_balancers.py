"""End to end: nginx, HAProxy and Apache httpd, configured by ``replisession lb-config``,
in front of real members of the example apps on loopback.

Through each balancer a client logs in and fills a cart; its requests stick to the
member of its cookie's route; that member is killed with SIGKILL; the next request
through the balancer keeps every attribute and re-routes the cookie to the member that
served it, to which the balancer then sticks. The same with hosts of two workers each
(``uvicorn --workers 2`` and ``gunicorn -w 2``), where a whole host dies, and where
either worker of a host serves every request of the session.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .balancers import KINDS, Balancer, balancer_binary, check_command, lb_config
from .cluster_helpers import FASTAPI, Cluster, Member, Response, wait_until_joined
from .worker_hosts import GUNICORN, UVICORN, WorkerHost, free_port_range, wait_until_hosts_replicate

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


class Stack:
    """Everything a test started; at teardown the balancers stop first, then the members die."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.balancers: list[Balancer] = []
        self.clusters: list[Cluster] = []
        self.hosts: list[WorkerHost] = []

    def balancer(self, kind: str, configuration: Callable[[int], str]) -> Balancer:
        balancer = Balancer(kind, configuration, self.folder / f"{kind}-{len(self.balancers)}")
        self.balancers.append(balancer)
        return balancer

    def logs(self) -> str:
        parts = [b.logs() for b in self.balancers] + [c.logs() for c in self.clusters]
        parts += [f"--- {h!r}\n{h.log_tail()}" for h in self.hosts]
        return "\n".join(parts)

    def stop(self) -> None:
        stops = [b.stop for b in self.balancers] + [c.stop for c in self.clusters] + [h.kill for h in self.hosts]
        errors = []
        for stop in stops:  # every one, even after one failed
            try:
                stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    made = Stack(tmp_path)
    yield made
    made.stop()


def session_state(response: Response, logs: Callable[[], str]) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.body, logs())
    body = response.json()
    body.pop("pid")
    return body


class Browser:
    """A client of the balancer that keeps the session cookie as a browser does: whatever
    value the last Set-Cookie gave (a balancer may have rewritten it)."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.cookie: str | None = None

    def call(self, method: str, path: str) -> Response:
        response = self.balancer.call(method, path, self.cookie)
        if response.set_cookie is not None:
            self.cookie = response.set_cookie.split(";", 1)[0].removeprefix("JSESSIONID=")
        return response


def sticks_and_fails_over(
    balancer: Balancer, members: list[Member], stack: Stack, cookie: Callable[[str, str], str]
) -> None:
    """Log in and fill a cart through the balancer (every request on the member that
    created the session), SIGKILL that member, and go on: nothing lost, the cookie
    re-routed to the member that served the next request, which then keeps the session.
    ``cookie(value, route)`` is the value the browser holds (the balancer may rewrite it).
    """
    browser = Browser(balancer)
    login = browser.call("POST", "/login?user=alice")
    state = session_state(login, stack.logs)
    route, session_id = state["route"], state["session_id"]
    assert browser.cookie is not None
    value = browser.cookie.rsplit(".", 1)[0].rsplit("~", 1)[-1]  # the signed id, without route or prefix
    assert (len(value), value[:24], browser.cookie) == (67, session_id, cookie(value, route))
    expected = {"route": route, "session_id": session_id, "user": "alice", "cart": [], "counter": 0}
    for item in ("book", "pen"):
        added = browser.call("POST", f"/cart?item={item}")
        expected["cart"].append(item)
        assert (session_state(added, stack.logs), added.set_cookie) == (expected, None)  # stuck to its member
    assert browser.call("POST", "/counter").json()["counter"] == 1
    expected["counter"] = 1

    (owner,) = [m for m in members if m.route == route]
    owner.kill()  # SIGKILL, and reaped: nothing listens on its port any more
    after = browser.call("POST", "/cart?item=ink")
    state = session_state(after, stack.logs)
    new_route = state["route"]
    assert new_route in {m.route for m in members} - {route}
    assert state == {**expected, "route": new_route, "cart": ["book", "pen", "ink"]}
    # Re-routed to the member that served it (the framework's cookie attributes unchanged).
    assert after.set_cookie == f"JSESSIONID={cookie(value, new_route)}; {FASTAPI.cookie_attributes}"

    # The balancer now sticks to the new route; nothing to re-issue.
    for _ in range(3):
        again = browser.call("GET", "/api/state")
        assert (session_state(again, stack.logs), again.set_cookie) == (state, None)


def three_members(stack: Stack) -> list[Member]:
    cluster = Cluster(FASTAPI, stack.folder)
    stack.clusters.append(cluster)
    members = cluster.start("node1", "node2", "node3")
    wait_until_joined(members)
    return members


@pytest.mark.parametrize("kind", KINDS)
def test_sessions_stick_to_their_route_and_survive_the_sigkill_of_its_member(kind: str, stack: Stack) -> None:
    balancer_binary(kind)
    members = three_members(stack)
    balancer = stack.balancer(
        kind, lambda port: lb_config(kind, [(m.route, "127.0.0.1", m.http_port) for m in members], port)
    )

    # Without a cookie, requests are balanced: new sessions start on every member.
    routes = {balancer.call("POST", "/counter").cookie()[1] for _ in range(9)}
    assert routes == {"node1", "node2", "node3"}, stack.logs()

    sticks_and_fails_over(balancer, members, stack, lambda value, route: f"{value}.{route}")


#: HAProxy configurations that Tomcat users have besides routing on the jvmRoute suffix:
#: the balancer's own prefix on the app's cookie, and a stick table keyed by the whole
#: cookie. Each works unchanged: (backend lines, server suffix, the cookie a browser holds).
TOMCAT_HAPROXY = {
    "cookie-prefix": (
        ["cookie JSESSIONID prefix nocache"],
        " cookie {route}",
        lambda value, route: f"{route}~{value}.{route}",
    ),
    "stick-table": (
        [
            "stick-table type string len 128 size 100k expire 30m",
            "stick on req.cook(JSESSIONID)",
            "stick store-response res.cook(JSESSIONID)",
        ],
        "",
        lambda value, route: f"{value}.{route}",
    ),
}


TOMCAT_HAPROXY_CONFIG = """\
defaults
    mode http
    option redispatch
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    default-server check inter 1s fall 2 rise 2

listen tomcats
    bind 127.0.0.1:{port}
    balance roundrobin
{backend}"""


@pytest.mark.parametrize("variant", TOMCAT_HAPROXY)
def test_haproxy_configurations_tomcat_users_have_work_unchanged(variant: str, stack: Stack) -> None:
    balancer_binary("haproxy")
    members = three_members(stack)
    lines, server_suffix, cookie = TOMCAT_HAPROXY[variant]

    def configuration(port: int) -> str:
        servers = [f"server {m.route} 127.0.0.1:{m.http_port}{server_suffix.format(route=m.route)}" for m in members]
        return TOMCAT_HAPROXY_CONFIG.format(port=port, backend="".join(f"    {line}\n" for line in [*lines, *servers]))

    balancer = stack.balancer("haproxy", configuration)
    sticks_and_fails_over(balancer, members, stack, cookie)


def served_by_every_worker(
    balancer: Balancer, host: WorkerHost, cookie: str, expected: dict[str, Any], logs: Callable[[], str]
) -> dict[str, Any]:
    """Write and read the session through the balancer, then on the host's own port until each
    of its workers has served it; every answer must be the whole session, from the host's
    route, with no new cookie. Returns the session as it then is.

    The host's port is asked directly, on a new connection each time, because a balancer
    may send every request over one pooled connection, hence to one worker.
    """

    def one_round(call: Callable[[str, str, str], Response]) -> set[int]:
        nonlocal expected
        wrote = call("POST", "/counter", cookie)
        expected = {**expected, "counter": expected["counter"] + 1}
        read = call("GET", "/api/state", cookie)
        for response in (wrote, read):
            assert response.set_cookie is None, (response.set_cookie, logs())
            assert session_state(response, logs) == expected
        return {wrote.json()["pid"], read.json()["pid"]}

    for _ in range(2):
        one_round(balancer.call)
    pids: set[int] = set()
    end = time.monotonic() + 20
    while len(pids) < host.workers:
        assert time.monotonic() < end, f"requests reached only pids {sorted(pids)} of {host!r}\n{logs()}"
        pids |= one_round(host.call)
    return expected


@pytest.mark.parametrize("kind", KINDS)
def test_hosts_of_two_workers_serve_the_session_from_either_and_survive_the_death_of_a_host(
    kind: str, stack: Stack
) -> None:
    balancer_binary(kind)
    addresses = ["127.0.0.2", "127.0.0.3"]
    peers = free_port_range(addresses, 4)
    seeds = ",".join(f"{address}:{peers[0]}-{peers[1]}" for address in addresses)
    for server, address, route in ((UVICORN, "127.0.0.2", "node1"), (GUNICORN, "127.0.0.3", "node2")):
        stack.hosts.append(WorkerHost(server, address, route, 2, peers, seeds, stack.folder))
    hosts = stack.hosts
    for host in hosts:
        host.wait_serving()
    wait_until_hosts_replicate(hosts)
    backends = [(h.route, h.address, h.http_port) for h in hosts]
    balancer = stack.balancer(kind, lambda port: lb_config(kind, backends, port))

    login = balancer.call("POST", "/login?user=bob")
    value, route = login.cookie()
    (owner,) = [h for h in hosts if h.route == route]
    (survivor,) = [h for h in hosts if h is not owner]
    added = balancer.call("POST", "/cart?item=book", f"{value}.{route}")
    expected = session_state(added, stack.logs)
    assert expected == {"route": route, "session_id": value[:24], "user": "bob", "cart": ["book"], "counter": 0}

    # Whichever worker the host's port hands a request to serves the whole session.
    expected = served_by_every_worker(balancer, owner, f"{value}.{route}", expected, stack.logs)

    owner.kill()  # the whole host: its server and both workers, every thread of theirs exited
    # The next request is a POST: no balancer repeats one it has sent, so it must succeed at once.
    pen = balancer.call("POST", "/cart?item=pen", f"{value}.{route}")
    expected = {**expected, "route": survivor.route, "cart": ["book", "pen"]}
    assert session_state(pen, stack.logs) == expected
    assert pen.set_cookie == survivor.set_cookie(value)
    read = balancer.call("GET", "/api/state", f"{value}.{survivor.route}")
    assert (session_state(read, stack.logs), read.set_cookie) == (expected, None)

    served_by_every_worker(balancer, survivor, f"{value}.{survivor.route}", expected, stack.logs)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_configurations_pass_the_balancers_own_check(kind: str, tmp_path: Path) -> None:
    """IPv6 and named hosts, a route that is one of nginx's map keywords, another cookie name."""
    binary = balancer_binary(kind)
    backends = [("default", "127.0.0.1", 8001), ("node-2", "[::1]", 8002), ("node_3", "localhost", 8003)]
    config = tmp_path / "balancer.conf"
    config.write_text(lb_config(kind, backends, 8080, "--cookie", "SESSION"))
    done = subprocess.run(check_command(kind, binary, config), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
