"""The peer channel over real sockets on 127.0.0.1: binding, handshake, order, de-duplication, close."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from replisession.errors import TransportError
from replisession.net.tcp import TcpTransport
from replisession.wire.messages import Data, Heartbeat, Leave, MemberInfo, SendMode

from .helpers import (
    CONFIRMATION,
    DEADLINE,
    HOST,
    Recorder,
    accepted,
    closed_port,
    config,
    connect,
    free_port_range,
    incarnation,
    members,
    one_connection_each,
)


def data(n: int, payload: object = None) -> Data:
    return Data(n, SendMode.ASYNC, "test", payload if payload is not None else n)


@pytest.mark.asyncio
async def test_two_transports_on_one_range_bind_its_first_free_ports() -> None:
    first, last = free_port_range(3)
    cfg = config(listen_ports=(first, last), route="edge1")
    async with members(cfg, cfg) as (a, b):
        assert (a.info.host, a.info.port, a.info.route) == (HOST, first, "edge1")
        assert (b.info.host, b.info.port) == (HOST, first + 1)
        assert a.info.incarnation != b.info.incarnation
        assert a.transport.local == a.info


@pytest.mark.asyncio
async def test_no_free_port_in_the_range_is_an_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        transport = TcpTransport(config(listen_ports=(port, port)), Recorder(), incarnation=incarnation())
        with pytest.raises(TransportError, match=rf"no free port in 127\.0\.0\.1:{port}-{port}"):
            await transport.start()
        await transport.close()


@pytest.mark.asyncio
async def test_local_before_start_is_an_error() -> None:
    transport = TcpTransport(config(), Recorder(), incarnation=incarnation())
    with pytest.raises(TransportError, match="not been started"):
        _ = transport.local


@pytest.mark.asyncio
async def test_handshake_then_a_thousand_messages_each_way_in_order() -> None:
    async with members(config(), config()) as (a, b):
        await connect(a, b)
        assert a.recorder.events == [("connected", b.info)]
        assert b.recorder.events == accepted(a.info)
        for n in range(1000):
            assert a.transport.send(b.info.id, data(n))
            assert b.transport.send(a.info.id, data(n, f"from b {n}"))
        await b.recorder.wait_for(lambda: len(b.recorder.messages()) == 1001)
        await a.recorder.wait_for(lambda: len(a.recorder.messages()) == 1000)
        assert b.recorder.messages() == [CONFIRMATION, *(data(n) for n in range(1000))]
        assert a.recorder.messages() == [data(n, f"from b {n}") for n in range(1000)]
        assert {event[1] for event in b.recorder.events[1:]} == {a.info}


@pytest.mark.asyncio
async def test_both_ends_of_a_peer_connection_send_small_frames_at_once() -> None:
    # Nagle's algorithm would hold an acknowledgement or a delta back until the peer's
    # delayed ACK (up to 40 ms on Linux). asyncio only sets TCP_NODELAY itself on sockets
    # whose protocol number is IPPROTO_TCP, and an accepted socket of a listener made by
    # socket.create_server has protocol number 0: the accepting end must set it itself.
    async with members(config(), config()) as (a, b):
        await connect(a, b)
        ends = [*a.transport._connections, *b.transport._connections]
        assert len(ends) == 2
        for protocol in ends:
            assert protocol.transport is not None
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), protocol.remote


@pytest.mark.asyncio
async def test_three_members_all_connected_and_talking() -> None:
    async with members(config(), config(), config()) as trio:
        for i, dialler in enumerate(trio):
            for target in trio[i + 1 :]:
                await connect(dialler, target)
        for sender in trio:
            for receiver in trio:
                if receiver is not sender:
                    assert sender.transport.send(receiver.info.id, Heartbeat((sender.info,)))
        for i, member in enumerate(trio):
            others = {m.info for m in trio} - {member.info}
            diallers = [m.info for m in trio[:i]]
            recorder = member.recorder
            await recorder.wait_for(lambda: len(recorder.messages()) == 2 + len(diallers))  # noqa: B023 (awaited here)
            assert {peer for (peer,) in member.recorder.of("connected")} == others
            assert sorted(member.recorder.of("message"), key=repr) == sorted(
                [*((peer, Heartbeat((peer,))) for peer in others), *((peer, CONFIRMATION) for peer in diallers)],
                key=repr,
            )


@pytest.mark.asyncio
async def test_graceful_close_is_a_disconnect_on_the_other_side_and_silent_on_ours() -> None:
    async with members(config(), config()) as (a, b):
        await connect(a, b)
        assert a.transport.send(b.info.id, Leave())
        await a.transport.close()
        await b.recorder.wait_for(lambda: ("disconnected", a.info) in b.recorder.events)
        assert b.recorder.events == [*accepted(a.info), ("message", a.info, Leave()), ("disconnected", a.info)]
        assert a.recorder.events == [("connected", b.info)]
        assert not b.transport.send(a.info.id, Leave())
        assert not a.transport.send(b.info.id, Leave())


@pytest.mark.asyncio
async def test_disconnect_closes_both_ends_and_reports_it_later() -> None:
    async with members(config(), config()) as (a, b):
        await connect(a, b)
        a.transport.disconnect(b.info.id)
        assert a.recorder.events == [("connected", b.info)]  # not from within the call
        assert not a.transport.send(b.info.id, Leave())
        await a.recorder.wait_for(lambda: ("disconnected", b.info) in a.recorder.events)
        await b.recorder.wait_for(lambda: ("disconnected", a.info) in b.recorder.events)
        a.transport.disconnect(b.info.id)  # already gone: nothing happens
        b.transport.dial(a.info.address)  # and they can meet again
        await a.recorder.wait_for(lambda: len(a.recorder.events) == 4)
        await b.recorder.wait_for(lambda: len(b.recorder.events) == 4)
        assert b.recorder.events == [*accepted(a.info), ("disconnected", a.info), ("connected", a.info)]
        assert a.recorder.events == [("connected", b.info), ("disconnected", b.info), *accepted(b.info)]


@pytest.mark.asyncio
async def test_dial_to_nobody_fails_unrefused() -> None:
    port = closed_port()
    async with members(config()) as (a,):
        a.transport.dial((HOST, port))
        a.transport.dial((HOST, port))  # already in flight: ignored
        await a.recorder.wait_for(lambda: bool(a.recorder.events))
        [(address, refused, reason)] = a.recorder.of("dial_failed")
        assert (address, refused) == ((HOST, port), False)
        assert reason.startswith(f"[Errno {errno.ECONNREFUSED}] ")  # the rest of the text is the loop's
        a.transport.dial((HOST, port))  # over: may be dialled again
        await a.recorder.wait_for(lambda: len(a.recorder.events) == 2)


@pytest.mark.asyncio
async def test_dialling_ourselves_is_refused_quietly(caplog: pytest.LogCaptureFixture) -> None:
    async with members(config()) as (a,):
        a.transport.dial(a.info.address)
        await a.recorder.wait_for(lambda: bool(a.recorder.events))
        assert a.recorder.events == [("dial_failed", a.info.address, True, "that address is this member")]
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in a.transport._connections)), DEADLINE)
        assert a.transport._connections == set()
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(5))
async def test_crossed_dials_leave_exactly_one_connection(round_: int) -> None:
    async with members(config(), config()) as (a, b):
        a.transport.dial(b.info.address)
        b.transport.dial(a.info.address)
        await a.recorder.wait_for(lambda: bool(a.recorder.of("connected")))
        await b.recorder.wait_for(lambda: bool(b.recorder.of("connected")))
        # The duplicate closes at both ends; the kept one carries the traffic.
        await one_connection_each(a, b)
        [kept_a] = a.transport._connections
        [kept_b] = b.transport._connections
        assert kept_a.local_end == kept_b.remote_end
        assert kept_a.remote_end == kept_b.local_end
        smaller = min(a, b, key=lambda m: m.info.incarnation)
        assert (kept_a.initiator, kept_b.initiator) == (smaller is a, smaller is b)
        for n in range(100):
            assert a.transport.send(b.info.id, data(n))
            assert b.transport.send(a.info.id, data(n))
        await a.recorder.wait_for(lambda: len(a.recorder.messages()) == 101)
        await b.recorder.wait_for(lambda: len(b.recorder.messages()) == 101)
        # Each end was the responder of one of the two connections: one key confirmation each.
        for member in (a, b):
            received = member.recorder.messages()
            assert received.count(CONFIRMATION) == 1
            assert [m for m in received if m != CONFIRMATION] == [data(n) for n in range(100)]
        assert a.recorder.of("connected") == [(b.info,)]
        assert b.recorder.of("connected") == [(a.info,)]
        assert a.recorder.of("disconnected") == b.recorder.of("disconnected") == []
        assert a.recorder.of("dial_failed") == b.recorder.of("dial_failed") == []


@pytest.mark.asyncio
async def test_backpressure_waits_while_the_peer_does_not_read() -> None:
    async with members(config(send_queue_bytes=1024), config()) as (a, b):
        await connect(a, b)
        await a.transport.wait_writable(b.info.id)  # nothing queued: at once
        await a.transport.wait_writable("0" * 32)  # no such peer: at once
        [reader] = b.transport._connections
        assert reader.transport is not None
        reader.transport.pause_reading()
        payload = b"x" * 65536
        sent = 0
        while a.transport.buffered(b.info.id) <= 1024:
            assert a.transport.send(b.info.id, data(sent, payload))
            sent += 1
            assert sent < 2000, "the socket buffers never filled"
        waiting = asyncio.ensure_future(a.transport.wait_writable(b.info.id))
        done, _ = await asyncio.wait([waiting], timeout=0.2)
        assert done == set()
        reader.transport.resume_reading()
        await asyncio.wait_for(waiting, DEADLINE)
        await b.recorder.wait_for(lambda: len(b.recorder.messages()) == 1 + sent)
        assert b.recorder.messages() == [CONFIRMATION, *(data(n, payload) for n in range(sent))]
        assert a.transport.buffered(b.info.id) < 1024
        assert a.transport.buffered("0" * 32) == 0


@pytest.mark.asyncio
async def test_wait_writable_returns_when_the_peer_goes_away() -> None:
    async with members(config(send_queue_bytes=1024), config()) as (a, b):
        await connect(a, b)
        [reader] = b.transport._connections
        assert reader.transport is not None
        reader.transport.pause_reading()
        sent = 0
        while a.transport.buffered(b.info.id) <= 1024:
            a.transport.send(b.info.id, data(sent, b"x" * 65536))
            sent += 1
        waiting = asyncio.ensure_future(a.transport.wait_writable(b.info.id))
        await asyncio.sleep(0)
        a.transport.disconnect(b.info.id)
        reader.transport.abort()
        await asyncio.wait_for(waiting, DEADLINE)


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(5))
async def test_what_is_sent_on_the_duplicate_before_it_is_dropped_still_arrives(round_: int) -> None:
    # The node introduces itself as soon as it hears of a connection (membership does), which
    # can be on the connection that de-duplication is about to retire.
    async with members(config(), config()) as (a, b):
        for member in (a, b):
            transport = member.transport
            original = member.recorder.on_connected

            def greet(peer: MemberInfo, transport: TcpTransport = transport, original: Any = original) -> None:
                original(peer)
                assert transport.send(peer.id, Heartbeat((transport.local,)))

            member.recorder.on_connected = greet  # type: ignore[method-assign]
        a.transport.dial(b.info.address)
        b.transport.dial(a.info.address)
        await a.recorder.wait_for(lambda: len(a.recorder.messages()) == 2)
        await b.recorder.wait_for(lambda: len(b.recorder.messages()) == 2)
        await one_connection_each(a, b)
        for member, other in ((a, b), (b, a)):
            assert member.recorder.events[0] == ("connected", other.info)
            assert sorted(member.recorder.events[1:], key=repr) == sorted(
                [("message", other.info, Heartbeat((other.info,))), ("message", other.info, CONFIRMATION)], key=repr
            )


@pytest.mark.asyncio
@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
async def test_a_wildcard_listener_advertises_its_host_names_address(
    wildcard: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Resolved, not bound: the tests open sockets on 127.0.0.1 only.
    monkeypatch.setattr(socket, "gethostname", lambda: "member-1")
    monkeypatch.setattr(socket, "gethostbyname", {"member-1": "10.1.2.3"}.__getitem__)
    transport = TcpTransport(config(), Recorder(), incarnation=incarnation())
    assert await transport._advertised_host(wildcard) == "10.1.2.3"
    assert await transport._advertised_host(HOST) == HOST
    assert caplog.records == []


@pytest.mark.asyncio
async def test_a_loopback_host_name_address_is_advertised_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")  # Debian's /etc/hosts
    transport = TcpTransport(config(), Recorder(), incarnation=incarnation())
    assert await transport._advertised_host("0.0.0.0") == "127.0.1.1"
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "127.0.1.1" in record.getMessage()
    assert "REPLISESSION_LISTEN" in record.getMessage()


@pytest.mark.asyncio
async def test_a_host_name_that_does_not_resolve_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> str:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "gethostbyname", fail)
    transport = TcpTransport(config(), Recorder(), incarnation=incarnation())
    with pytest.raises(TransportError, match=r"does not resolve .*: set listen_host \(REPLISESSION_LISTEN\)"):
        await transport._advertised_host("0.0.0.0")


@pytest.mark.asyncio
async def test_a_transport_starts_once() -> None:
    async with members(config()) as (a,):
        with pytest.raises(TransportError, match="only once"):
            await a.transport.start()
