"""The cluster member over real sockets on loopback: send modes end-to-end, outcomes naming members."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from replisession import ClusterConfig
from replisession.cli import demo_cluster
from replisession.core.channel import DeliveryStatus
from replisession.core.messages import Ack, Leave, MemberInfo, SendMode
from replisession.errors import TransportError
from replisession.node import ClusterMember


def free_port() -> int:
    return demo_cluster.free_port()


def config(route: str, port: int, seed_port: int) -> ClusterConfig:
    return ClusterConfig(
        route=route,
        listen_ports=(port, port),
        members=ClusterConfig.from_env({"REPLISESSION_MEMBERS": f"127.0.0.1:{seed_port}"}).members,
        secret=b"member-test",
        heartbeat_interval=0.1,
        drop_time=0.6,
        probe_timeout=0.3,
        send_timeout=1.0,
    )


def eventually(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)  # polling inside a deadline


@pytest.fixture
def pair() -> Iterator[tuple[ClusterMember, ClusterMember]]:
    seed = free_port()
    a = ClusterMember(config("a", seed, seed))
    b = ClusterMember(config("b", free_port(), seed))
    a.start()
    b.start()
    try:
        eventually(lambda: [m.route for m in a.members()] == ["b"] and [m.route for m in b.members()] == ["a"])
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_sync_completes_after_the_handler_applied_it(pair: tuple[ClusterMember, ClusterMember]) -> None:
    a, b = pair
    applied: list[Any] = []
    b.on("note", lambda sender, payload: applied.append((sender.route, payload)))
    outcome = a.send("note", {"n": 1}, SendMode.SYNC).result(5)
    assert applied == [("a", {"n": 1})]  # visible as soon as the send returns
    assert outcome.ok
    assert [(m.route, status, detail) for m, status, detail in outcome.results.values()] == [
        ("b", DeliveryStatus.OK, "")
    ]


def test_a_failing_handler_is_reported_naming_the_member(pair: tuple[ClusterMember, ClusterMember]) -> None:
    a, b = pair

    def broken(sender: MemberInfo, payload: Any) -> None:
        raise ValueError("cannot apply")

    b.on("note", broken)
    outcome = a.send("note", 1, SendMode.SYNC).result(5)
    assert [(m.route, status, detail) for m, status, detail in outcome.failures()] == [
        ("b", DeliveryStatus.FAILED, "ValueError: cannot apply")
    ]


def test_ack_returns_on_receipt_and_async_at_once(pair: tuple[ClusterMember, ClusterMember]) -> None:
    a, b = pair
    seen: list[Any] = []
    b.on("slow", lambda sender, payload: seen.append(payload))
    assert a.send("slow", "ack", SendMode.ACK).result(5).ok
    assert a.send("slow", "async", SendMode.ASYNC).result(5).ok
    eventually(lambda: seen == ["ack", "async"])


def test_the_data_of_one_read_is_acknowledged_by_one_ack(pair: tuple[ClusterMember, ClusterMember]) -> None:
    a, b = pair
    applied: list[int] = []
    b.on("note", lambda sender, payload: applied.append(payload))
    sent: list[Ack] = []  # the ACKs from b, as a's transport hands them over
    assert a._transport is not None
    listener = a._transport._listener

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(listener, name)

        def on_message(self, peer: MemberInfo, message: Any) -> None:
            if isinstance(message, Ack):
                sent.append(message)
            listener.on_message(peer, message)

    a._transport._listener = Spy()  # an attribute, not a method: patchable when compiled
    futures: list[Any] = []
    # A handler runs on a's loop: its 40 sends are written in one turn, as one write.
    a.on("go", lambda sender, payload: futures.extend(a.send("note", n, SendMode.SYNC) for n in range(40)))
    assert b.send("go", None, SendMode.SYNC).result(5).ok
    assert all(future.result(5).ok for future in futures)
    assert applied == list(range(40))
    acknowledged = [msg_id for ack in sent for msg_id in (ack.msg_id, *ack.more)]
    assert sorted(acknowledged) == sorted(future.result().request_id for future in futures)
    assert len(sent) < 40  # TCP may split the write into a few reads, never into 40


def test_a_stop_ends_a_send_still_waiting_for_its_acknowledgement(
    pair: tuple[ClusterMember, ClusterMember],
) -> None:
    a, b = pair
    release = threading.Event()
    b.on("held", lambda sender, payload: release.wait(30))  # b's loop is busy: no ACK comes
    future = a.send("held", None, SendMode.SYNC, ack_timeout=30)
    try:
        eventually(future.running)
        assert not future.cancel()  # under way: as a standard future, no longer cancellable
        a.stop()
        with pytest.raises(TransportError, match="stopped"):  # told at once, not after 30 s
            future.result(0)
    finally:
        release.set()


def test_a_waited_for_send_that_cannot_be_written_waits_for_nobody(
    pair: tuple[ClusterMember, ClusterMember],
) -> None:
    a, _ = pair
    with pytest.raises(Exception, match="serialize"):
        a.send("note", object(), SendMode.SYNC).result(5)  # msgpack cannot encode it
    assert a.channel.pending == 0  # forgotten at once, not timed out later


def test_a_post_is_delivered_and_one_that_cannot_be_sent_is_logged(
    pair: tuple[ClusterMember, ClusterMember], caplog: pytest.LogCaptureFixture
) -> None:
    # post(): an async send whose outcome nobody looks at (an async delta), with no future.
    a, b = pair
    got: list[Any] = []
    b.on("note", lambda sender, payload: got.append(payload))
    assert a.post("note", {"n": 1}) is None
    eventually(lambda: got == [{"n": 1}])
    a.post("note", object())  # msgpack cannot encode it: nobody to raise to, so it is logged
    eventually(lambda: any("async note not sent" in r.getMessage() for r in caplog.records))
    a.post("note", {"n": 2}, [b.local])  # and the member goes on
    eventually(lambda: got == [{"n": 1}, {"n": 2}])


def test_data_acknowledged_in_a_read_that_ends_with_a_leave_is_still_acknowledged(
    pair: tuple[ClusterMember, ClusterMember],
) -> None:
    # A member that stops right after a sync send: its DATA and its LEAVE reach the peer
    # in one read, and the peer's acknowledgement must leave before it closes the connection.
    a, b = pair
    applied: list[int] = []
    b.on("note", lambda sender, payload: applied.append(payload))
    futures: list[Any] = []
    assert a._transport is not None
    transport = a._transport

    def send_then_leave(sender: MemberInfo, payload: Any) -> None:
        futures.append(a.send("note", 1, SendMode.SYNC))  # on a's loop: written in this turn
        transport.send(sender.id, Leave())  # the same turn: the same write, after the DATA

    a.on("go", send_then_leave)
    b.send("go", None, SendMode.ASYNC)
    eventually(lambda: bool(futures))
    outcome = futures[0].result(5)
    assert applied == [1]
    assert outcome.ok, outcome.failures()


def test_a_silent_target_times_out_and_a_dead_one_is_gone(pair: tuple[ClusterMember, ClusterMember]) -> None:
    a, b = pair
    gate = threading.Event()
    b.on("stall", lambda sender, payload: gate.wait(3))  # blocks b's member thread past the timeout
    outcome = a.send("stall", 1, SendMode.SYNC, ack_timeout=0.3).result(5)
    gate.set()
    assert [(m.route, status) for m, status, _ in outcome.failures()] == [("b", DeliveryStatus.TIMEOUT)]
    b_info = a.members()[0]
    b.stop()
    eventually(lambda: a.members() == [])
    outcome = a.send("stall", 2, SendMode.SYNC, targets=[b_info]).result(5)
    assert [(m.route, status) for m, status, _ in outcome.failures()] == [("b", DeliveryStatus.GONE)]


def test_lingering_async_sends_leave_with_the_next_sync_send_in_order() -> None:
    seed = free_port()
    # Heartbeats go on the same connection and take lingering frames along: rare ones here
    # (every 2 s), so none falls between the async sends and the check (it did at 0.1 s).
    quiet = {"heartbeat_interval": 2.0, "drop_time": 20.0}
    lingering = dataclasses.replace(config("a", seed, seed), async_linger=1.0, **quiet)  # far longer than the test
    a = ClusterMember(lingering)
    b = ClusterMember(dataclasses.replace(config("b", free_port(), seed), **quiet))
    a.start()
    b.start()
    try:
        eventually(lambda: [m.route for m in a.members()] == ["b"] and [m.route for m in b.members()] == ["a"])
        seen: list[Any] = []
        b.on("note", lambda sender, payload: seen.append(payload))
        for n in range(3):
            assert a.send("note", n, SendMode.ASYNC).result(5).ok

        async def queued() -> int:
            assert a._transport is not None
            return a._transport.buffered(b.local.id)

        assert a._loop_thread.submit(queued()).result(5) > 0  # held back, not written (1 s linger)
        assert seen == []
        assert a.send("note", "sync", SendMode.SYNC).result(5).ok  # takes them along
        assert seen == [0, 1, 2, "sync"]
    finally:
        b.stop()
        a.stop()
