"""Shared helpers of the net tests: a recording listener, configs and running transports on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from replisession.cli import demo_cluster
from replisession.cluster_config import ClusterConfig
from replisession.net.tcp import TcpTransport
from replisession.wire.messages import Heartbeat, MemberInfo, Message

HOST = "127.0.0.1"
DEADLINE = 10.0  # seconds; a passing test is far quicker, a hanging one fails here


def incarnation() -> str:
    return secrets.token_hex(16)


def config(**overrides: Any) -> ClusterConfig:
    settings: dict[str, Any] = {
        "listen_host": HOST,
        "listen_ports": (0, 0),
        "secret": b"correct horse battery staple",
        "cluster_name": "test",
    }
    settings.update(overrides)
    return ClusterConfig(**settings)


def free_port_range(size: int) -> tuple[int, int]:
    """``size`` consecutive ports on 127.0.0.1 that were free a moment ago, never handed out before."""
    return demo_cluster.free_port_range(size, HOST)


def closed_port() -> int:
    """A port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorder:
    """A TransportListener that records every call, and lets a test wait for a condition."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    reads: int = 0  # on_read_done calls: reads that delivered a message
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_connected(self, peer: MemberInfo) -> None:
        self._record("connected", peer)

    def on_message(self, peer: MemberInfo, message: Message) -> None:
        self._record("message", peer, message)

    def on_read_done(self, peer: MemberInfo) -> None:
        self.reads += 1

    def on_disconnected(self, peer: MemberInfo) -> None:
        self._record("disconnected", peer)

    def on_dial_failed(self, address: tuple[str, int], refused: bool, reason: str) -> None:
        self._record("dial_failed", address, refused, reason)

    def _record(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [event[1:] for event in self.events if event[0] == kind]

    def messages(self) -> list[Message]:
        return [event[2] for event in self.events if event[0] == "message"]

    async def wait_for(self, condition: Callable[[], bool], within: float = DEADLINE) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Member:
    transport: TcpTransport
    recorder: Recorder

    @property
    def info(self) -> MemberInfo:
        return self.transport.local


@contextlib.asynccontextmanager
async def members(*configs: ClusterConfig) -> AsyncIterator[list[Member]]:
    """Started transports, one per config, closed on the way out."""
    started: list[Member] = []
    try:
        for cfg in configs:
            recorder = Recorder()
            transport = TcpTransport(cfg, recorder, incarnation=incarnation())
            started.append(Member(transport, recorder))
            await transport.start()
        yield started
    finally:
        for member in started:
            await member.transport.close()


async def one_connection_each(*group: Member) -> None:
    """Wait until each member holds exactly one socket (a crossed dial's duplicate is closed)."""
    async with asyncio.timeout(DEADLINE):
        # Polled: which of two connections survives is only known once both completed.
        while any(len(member.transport._connections) != 1 for member in group):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def connect(dialler: Member, target: Member) -> None:
    """Dial ``target`` and wait until both ends report the connection."""
    dialler.transport.dial(target.info.address)
    await dialler.recorder.wait_for(lambda: ("connected", target.info) in dialler.recorder.events)
    await target.recorder.wait_for(lambda: ("connected", dialler.info) in target.recorder.events)


#: The initiator's first frame after WELCOME proves it holds the session key (wire's key
#: confirmation); the responder receives it as an empty heartbeat, as any other message.
CONFIRMATION = Heartbeat()


def accepted(peer: MemberInfo) -> list[tuple[Any, ...]]:
    """What the responder of a connection from ``peer`` hears as the handshake completes."""
    return [("connected", peer), ("message", peer, CONFIRMATION)]
