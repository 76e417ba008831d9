"""What a transport does with peers that are wrong, misconfigured or hostile: drop them, log once, carry on."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from replisession.wire.frames import FrameDecoder
from replisession.wire.messages import PROTOCOL_VERSION, FrameType, Refuse, decode_message

from .helpers import DEADLINE, HOST, Member, accepted, config, connect, members


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "replisession.net" and r.levelno == logging.WARNING]


async def read_until_closed(member: Member, payload: bytes) -> bytes:
    """Send ``payload`` on a raw socket to ``member``; everything it answers until it closes the socket."""
    reader, writer = await asyncio.open_connection(*member.info.address)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.read(), DEADLINE)  # b"" at the end means closed by the member
    finally:
        writer.close()
        await writer.wait_closed()


def refusal_in(answer: bytes) -> str:
    [frame] = FrameDecoder().feed(answer)
    assert frame.frame_type == FrameType.REFUSE
    message = decode_message(frame.frame_type, frame.body)
    assert isinstance(message, Refuse)
    return message.reason


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "magic"),
        (struct.pack(">2sBBBI", b"RS", PROTOCOL_VERSION, FrameType.HELLO, 0, 2**31), "maximum frame size"),
    ],
    ids=["garbage", "oversized-frame-header"],
)
async def test_bad_bytes_cost_the_sender_its_connection_only(
    payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with members(config(), config()) as (a, b):
        answer = await read_until_closed(a, payload)
        assert reason in refusal_in(answer)
        [warning] = warnings(caplog)
        assert warning.startswith(f"dropping the connection from {HOST}:")
        assert reason in warning
        await read_until_closed(a, payload)  # the same again: logged once
        assert len(warnings(caplog)) == 1
        await connect(b, a)  # a proper peer is still welcome
        assert a.recorder.events == accepted(b.info)


@pytest.mark.asyncio
async def test_a_silent_connection_is_closed_at_the_handshake_deadline(caplog: pytest.LogCaptureFixture) -> None:
    async with members(config()) as (a,):
        a.transport.handshake_timeout = 0.2
        reader, writer = await asyncio.open_connection(*a.info.address)
        try:
            assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        finally:
            writer.close()
            await writer.wait_closed()
        assert warnings(caplog) == [
            f"dropping the connection from {HOST}:{writer.get_extra_info('sockname')[1]}: no handshake within 0.2 s"
        ]
        assert a.recorder.events == []


@pytest.mark.asyncio
async def test_a_connection_closed_before_the_handshake_is_forgotten_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with members(config(), config()) as (a, b):
        _, writer = await asyncio.open_connection(*a.info.address)  # as the failure detector's probe does
        writer.close()
        await writer.wait_closed()
        await connect(b, a)
        assert warnings(caplog) == []
        assert a.recorder.events == accepted(b.info)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("dialler_config", "reason"),
    [
        (config(secret=b"another secret"), "authentication failed: wrong cluster secret?"),
        (config(cluster_name="other"), "cluster name 'other' is not ours ('test')"),
    ],
    ids=["wrong-secret", "wrong-cluster-name"],
)
async def test_a_misconfigured_member_is_refused_and_both_sides_say_why(
    dialler_config: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with members(config(), dialler_config) as (a, rogue):  # type: ignore[arg-type]
        rogue.transport.dial(a.info.address)
        await rogue.recorder.wait_for(lambda: bool(rogue.recorder.events))
        assert rogue.recorder.events == [("dial_failed", a.info.address, True, reason)]
        assert a.recorder.events == []
        [on_a, on_rogue] = warnings(caplog)
        assert on_a.startswith(f"dropping the connection from {HOST}:")
        assert on_a.endswith(f": {reason}")
        assert on_rogue == (
            f"refused by {HOST}:{a.info.port}: {reason!r} — "
            "check REPLISESSION_CLUSTER_SECRET / REPLISESSION_CLUSTER_NAME"
        )
        rogue.transport.dial(a.info.address)  # it retries: no new warning on either side
        await rogue.recorder.wait_for(lambda: len(rogue.recorder.events) == 2)
        assert rogue.recorder.events[1] == ("dial_failed", a.info.address, True, reason)
        assert len(warnings(caplog)) == 2


@pytest.mark.asyncio
async def test_a_peer_that_is_not_a_member_fails_the_dial_as_refused(caplog: pytest.LogCaptureFixture) -> None:
    handled = asyncio.get_running_loop().create_future()

    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        await reader.read()  # until the member hangs up
        writer.close()
        await writer.wait_closed()
        handled.set_result(None)

    server = await asyncio.start_server(babble, HOST, 0)
    address = server.sockets[0].getsockname()[:2]
    try:
        async with members(config()) as (a,):
            a.transport.dial(address)
            await a.recorder.wait_for(lambda: bool(a.recorder.events))
            [(failed, refused, reason)] = a.recorder.of("dial_failed")
            assert (failed, refused) == (address, True)
            assert "magic" in reason
            [warning] = warnings(caplog)
            assert warning == f"dropping the connection to {HOST}:{address[1]}: {reason}"
            await asyncio.wait_for(handled, DEADLINE)
    finally:
        server.close()
        await server.wait_closed()


class _Mute:
    """A TCP server that accepts and reads, but never says a word (a hung process)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> tuple[str, int]:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            await reader.read()

        self.server = await asyncio.start_server(swallow, HOST, 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            await writer.wait_closed()
        await self.server.wait_closed()


@pytest.mark.asyncio
async def test_a_peer_that_never_answers_the_hello_fails_the_dial_at_the_deadline() -> None:
    async with _Mute() as address, members(config()) as (a,):
        a.transport.handshake_timeout = 0.2
        a.transport.dial(address)
        await a.recorder.wait_for(lambda: bool(a.recorder.events))
        assert a.recorder.events == [("dial_failed", address, False, "no handshake within 0.2 s")]


@pytest.mark.asyncio
async def test_close_during_a_dial_makes_no_callback() -> None:
    async with _Mute() as address, members(config()) as (a,):
        a.transport.dial(address)
        async with asyncio.timeout(DEADLINE):
            while not a.transport._connections:  # noqa: ASYNC110 (connected, waiting for the WELCOME)
                await asyncio.sleep(0.01)
        await asyncio.wait_for(a.transport.close(), DEADLINE)
        assert a.transport._dialing == {}
        assert a.recorder.events == []
        a.transport.dial(address)  # closed: ignored
        assert a.transport._dialing == {}
