"""Session replication across real example-app processes on loopback.

The FastAPI example (uvicorn) and the Flask example (gunicorn) run as cluster members
configured only by ``REPLISESSION_*`` variables: a session written through one member
is served, identical, by the others; a member killed with SIGKILL loses no
acknowledged attribute (sync mode) and the cookie is re-routed to the member that
serves it; a member that joins later serves every existing session on its first
read; ``send_failure=fail`` answers 503 when a member cannot acknowledge a write.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .cluster_helpers import FASTAPI, FLASK, Cluster, Example, Member, Response, cookie_of, wait_until_joined

pytestmark = pytest.mark.integration


@pytest.fixture
def new_cluster(tmp_path: Path) -> Iterator[Callable[[Example], Cluster]]:
    """Makes clusters; at teardown every member is killed by its pid (its process group)."""
    made: list[Cluster] = []

    def make(example: Example) -> Cluster:
        cluster = Cluster(example, tmp_path)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def state_of(member: Member, cookie: str) -> tuple[dict[str, object], str | None]:
    response = member.call("GET", "/api/state", cookie)
    body = response.json()
    body.pop("pid")
    return body, response.set_cookie


@pytest.mark.parametrize("example", [FASTAPI, FLASK], ids=lambda e: e.name)
def test_written_through_one_member_read_through_the_others_and_kept_after_sigkill(
    example: Example, new_cluster: Callable[[Example], Cluster]
) -> None:
    cluster = new_cluster(example)
    a, b, c = cluster.start("node1", "node2", "node3")
    wait_until_joined([a, b, c])

    login = a.call("POST", "/login?user=alice")
    value, route = login.cookie()
    assert route == "node1"
    cookie = f"{value}.node1"
    session_id = login.json()["session_id"]
    assert isinstance(session_id, str)
    assert value.startswith(session_id)
    for _ in range(2):
        assert a.call("POST", "/cart?item=book", cookie).status == 200
    counted = a.call("POST", "/counter", cookie).json()
    expected = {"session_id": session_id, "user": "alice", "cart": ["book", "book"], "counter": 1}
    assert {k: counted[k] for k in expected} == expected

    # Read once through each other member: sync mode means the writes are there already.
    for member in (b, c):
        state, set_cookie = state_of(member, cookie)
        assert state == {**expected, "route": member.route}, cluster.logs()
        assert set_cookie == example.set_cookie(value, member.route)  # re-routed to the serving member

    a.kill()  # SIGKILL (the gunicorn master and its worker): no goodbye, nothing flushed
    pen = b.call("POST", "/cart?item=pen", cookie)  # the balancer fails over to node2 with node1's cookie
    assert pen.status == 200, (pen.status, pen.body, cluster.logs())
    assert pen.set_cookie == example.set_cookie(value, "node2")
    after = {**expected, "cart": ["book", "book", "pen"]}
    assert {k: pen.json()[k] for k in (*after, "route")} == {**after, "route": "node2"}

    # node2's cookie now: the same session, no cookie to re-issue.
    state, set_cookie = state_of(b, f"{value}.node2")
    assert (state, set_cookie) == ({**after, "route": "node2"}, None)
    # node2's write reached node3 too (sync: before node2 answered).
    state, set_cookie = state_of(c, f"{value}.node2")
    assert (state, set_cookie) == ({**after, "route": "node3"}, example.set_cookie(value, "node3"))


def test_a_member_started_later_serves_every_existing_session_on_its_first_read(
    new_cluster: Callable[[Example], Cluster],
) -> None:
    cluster = new_cluster(FASTAPI)
    first = cluster.start("node1", "node2", "node3")
    wait_until_joined(first)

    sessions: list[tuple[str, dict[str, object]]] = []
    for index in range(20):
        member = first[index % 3]
        cookie = cookie_of(member.call("POST", f"/login?user=user{index}"))
        assert member.call("POST", f"/cart?item=item{index}", cookie).status == 200
        for _ in range(index % 4 + 1):
            last = member.call("POST", "/counter", cookie).json()
        expected = {
            "session_id": last["session_id"],
            "user": f"user{index}",
            "cart": [f"item{index}"],
            "counter": index % 4 + 1,
        }
        sessions.append((cookie, expected))

    (fourth,) = cluster.start("node4")
    # Joined: a session it writes is served by each of the three (so each counts it a member).
    wait_until_joined([fourth, *first])
    for cookie, expected in sessions:
        value = cookie.rsplit(".", 1)[0]
        # The FIRST read must be right: not yet transferred means fetched now, never empty.
        state, set_cookie = state_of(fourth, cookie)
        assert state == {**expected, "route": "node4"}, cluster.logs()
        assert set_cookie == FASTAPI.set_cookie(value, "node4")


def test_concurrent_writes_through_one_member_all_reach_every_member(
    new_cluster: Callable[[Example], Cluster],
) -> None:
    # Requests that end in the same turn of node1's loop send their deltas to each peer in
    # one BATCH frame, and each peer answers one read with one ACK: every write must still
    # be acknowledged only once applied, and none may be lost or applied twice.
    cluster = new_cluster(FASTAPI)
    a, b, c = cluster.start("node1", "node2", "node3")  # sync mode
    wait_until_joined([a, b, c])

    def shop(index: int) -> tuple[str, list[str]]:
        cookie = cookie_of(a.call("POST", f"/login?user=user{index}"))
        items = [f"item{index}-{n}" for n in range(5)]
        for item in items:
            assert a.call("POST", f"/cart?item={item}", cookie).status == 200
        return cookie, items

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        carts = list(pool.map(shop, range(32)))
    for member in (b, c):
        for cookie, items in carts:
            state, _ = state_of(member, cookie)
            assert state["cart"] == items, (member.route, cluster.logs())


@pytest.mark.parametrize("trial", range(5))
def test_sync_mode_loses_no_acknowledged_write_when_the_writer_is_killed(
    trial: int, new_cluster: Callable[[Example], Cluster]
) -> None:
    cluster = new_cluster(FASTAPI)
    a, b, c = cluster.start("node1", "node2", "node3")  # REPLISESSION_SEND_MODE unset: sync
    wait_until_joined([a, b, c])

    cookie = cookie_of(a.call("POST", "/counter"))
    for count in range(2, 21):
        response = a.call("POST", "/counter", cookie)
        assert response.status == 200
        assert response.json()["counter"] == count
    a.kill()  # SIGKILL at once after the 20th acknowledged write

    state, set_cookie = state_of(b, cookie)
    assert state["counter"] == 20, cluster.logs()
    assert state["route"] == "node2"
    assert set_cookie == FASTAPI.set_cookie(cookie.rsplit(".", 1)[0], "node2")


#: The body of the 503 a member answers when a write did not reach every member in time.
NOT_REPLICATED = b"503 Service Unavailable: the session change did not reach every cluster member in time.\n"


def write_while_muted(cluster: Cluster, **extra: str) -> tuple[Response, float]:
    """Two members; node2 SIGSTOPped; the second write of a session through node1: (answer, seconds).

    The drop time is long (5 s) so that a loaded machine, which can delay heartbeats past
    the suite's usual 1 s, cannot make node1 drop node2 before the write (it then waited
    for nobody and answered in 2 ms, once in a dozen loaded runs)."""
    a, b = cluster.start("node1", "node2", send_timeout="0.5", drop_time="5", **extra)
    wait_until_joined([a, b])
    cookie = cookie_of(a.call("POST", "/counter"))
    os.kill(b.process.pid, signal.SIGSTOP)  # alive to the kernel (its connections stay open), mute to the cluster
    try:
        started = time.monotonic()
        response = a.call("POST", "/counter", cookie)
        elapsed = time.monotonic() - started
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    return response, elapsed


def test_send_failure_fail_answers_503_when_a_member_cannot_acknowledge(
    new_cluster: Callable[[Example], Cluster],
) -> None:
    cluster = new_cluster(FASTAPI)
    response, elapsed = write_while_muted(cluster, send_failure="fail")
    assert (response.status, response.body) == (503, NOT_REPLICATED), cluster.logs()
    assert response.headers["retry-after"] == "60"
    assert 0.5 <= elapsed < 3.0, elapsed  # after the send timeout (0.5 s), within a few seconds


def test_send_failure_log_waits_for_the_timeout_then_answers_200(
    new_cluster: Callable[[Example], Cluster],
) -> None:
    cluster = new_cluster(FASTAPI)  # REPLISESSION_SEND_FAILURE unset: log
    response, elapsed = write_while_muted(cluster)
    assert response.status == 200, cluster.logs()
    assert response.json()["counter"] == 2
    # Sync mode: a stopped member cannot acknowledge, so the answer waited out the send timeout.
    assert 0.5 <= elapsed < 3.0, elapsed
