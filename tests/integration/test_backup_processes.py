"""The BackupManager across real FastAPI example processes on loopback.

Five members with ``REPLISESSION_MANAGER=backup`` and ``REPLISESSION_BACKUPS=2``, and
no sticky balancing at all: every request goes to the next member in turn, so most
requests land on a member that holds no copy and must locate the session, serve it
and become its primary. Then two members die together (SIGKILL): every session keeps
every acknowledged write, and each response re-routes the cookie to its server.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster_helpers import FASTAPI, Cluster, Member, wait_until_joined

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(FASTAPI, tmp_path)
    yield made
    made.stop()  # every member killed by its pid (its process group)


def test_round_robin_without_stickiness_then_two_members_die_and_nothing_is_lost(cluster: Cluster) -> None:
    members = cluster.start("node1", "node2", "node3", "node4", "node5", manager="backup", backups="2")
    wait_until_joined(members)
    turns: Iterator[Member] = itertools.cycle(members)
    carts: dict[str, list[str]] = {}  # cookie value (without route) -> the cart every member must show
    routes: dict[str, str] = {}  # cookie value -> the route the client's cookie carries now
    for user in ("ann", "bob", "cyd", "dee"):
        login = next(turns).call("POST", f"/login?user={user}")
        value, routes[value] = login.cookie()
        carts[value] = []
        for item in ("book", "pen", "ink"):
            server = next(turns)
            added = server.call("POST", f"/cart?item={item}", f"{value}.{routes[value]}")
            assert added.status == 200, (added.status, added.body, cluster.logs())
            carts[value].append(item)
            assert added.json()["cart"] == carts[value], cluster.logs()
            assert added.cookie() == (value, server.route)  # re-routed to whoever served it
            routes[value] = server.route

    members[0].kill()
    members[3].kill()
    survivors = [members[1], members[2], members[4]]
    for value, cart in carts.items():
        for server in survivors:
            state = server.call("GET", "/api/state", f"{value}.{routes[value]}")
            assert state.status == 200, (state.status, state.body, cluster.logs())
            assert state.json()["cart"] == cart, (server, cluster.logs())
            if routes[value] != server.route:
                assert state.cookie() == (value, server.route)
                routes[value] = server.route
