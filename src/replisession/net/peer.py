"""One peer connection: a thin :class:`asyncio.Protocol` around a sans-IO PeerConnection.

It moves bytes between the socket and the wire layer's state machine, in the
order the wire layer requires (what receiving produced goes out before anything
else), and hands the events to its owner, the transport, which decides what they
mean for the member. It keeps one timer: the handshake deadline, or the grace
period of a connection that is closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol, cast

from ..errors import LocalProtocolError, RemoteProtocolError
from ..wire.connection import Established, PeerConnection, Received, Refused
from ..wire.frames import HEADER_SIZE, MAC_SIZE
from ..wire.messages import FrameType, MemberInfo, Message
from .flow import WriteFlowControl

__all__ = ["ConnectionOwner", "PeerProtocol", "endpoint", "no_delay", "resolve"]

Address = tuple[str, int]


class ConnectionOwner(Protocol):
    """What a connection reports to (the transport)."""

    bytes_sent: int  # counted by the connections, for observability
    bytes_received: int

    def connection_made(self, protocol: PeerProtocol) -> bool: ...

    def established(self, protocol: PeerProtocol, peer: MemberInfo) -> None: ...

    def received(self, protocol: PeerProtocol, message: Message) -> None: ...

    def read_done(self, protocol: PeerProtocol) -> None: ...

    def refused(self, protocol: PeerProtocol, reason: str) -> None: ...

    def protocol_error(self, protocol: PeerProtocol, exc: RemoteProtocolError) -> None: ...

    def expired(self, protocol: PeerProtocol) -> None: ...

    def connection_lost(self, protocol: PeerProtocol, exc: Exception | None) -> None: ...


class PeerProtocol(asyncio.Protocol):
    """One connection: moves bytes between the socket and its PeerConnection."""

    def __init__(
        self,
        owner: ConnectionOwner,
        connection: PeerConnection,
        dialled: Address | None,
        *,
        handshake_timeout: float,
        send_queue_bytes: int,
        send_timeout: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.owner = owner
        self._handshake_timeout = handshake_timeout
        self._send_queue_bytes = send_queue_bytes
        self._send_timeout = send_timeout
        self.connection = connection
        self.dialled = dialled  # the address we dialled, or None for a connection we accepted
        self.flow = WriteFlowControl()
        self.transport: asyncio.Transport | None = None
        self.peer: MemberInfo | None = None  # once the handshake completed
        self.local_end: Address | None = None
        self.remote_end: Address | None = None
        self.closing = False
        self.concluded: asyncio.Future[None] = loop.create_future()  # the handshake ended, either way
        self.lost: asyncio.Future[None] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        # Messages sent during one turn of the loop leave in one write at its end: one
        # system call and one wake-up of the peer for the deltas of every request that
        # finished in that turn, sealed together as one frame (a BATCH) when they are
        # several. Items are frames already sealed (bytes) or encoded messages to seal.
        self._pending: list[bytes | tuple[FrameType, bytes]] = []
        self._pending_bytes = 0
        self._flush: asyncio.Handle | None = None
        self._lingering = False  # _flush is a call_later (uvloop's timer handles are no asyncio.TimerHandle)

    @property
    def initiator(self) -> bool:
        return self.dialled is not None

    @property
    def remote(self) -> str:
        """The other end, for log lines."""
        host, port = self.dialled or self.remote_end or ("?", 0)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.local_end = endpoint(transport.get_extra_info("sockname"))
        self.remote_end = endpoint(transport.get_extra_info("peername"))
        self.transport.set_write_buffer_limits(high=self._send_queue_bytes)
        no_delay(transport.get_extra_info("socket"))
        self._timer = asyncio.get_running_loop().call_later(self._handshake_timeout, self.owner.expired, self)
        if self.owner.connection_made(self) and self.initiator:
            self.transport.write(self.connection.initiate())

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.owner.bytes_received += len(data)
        try:
            events = self.connection.receive_data(data)
        except RemoteProtocolError as exc:
            self.owner.protocol_error(self, exc)
            return
        outgoing = self.connection.data_to_send()  # the responder's WELCOME
        if outgoing and self.transport is not None:
            self.transport.write(outgoing)
        for event in events:
            if self.closing:
                break
            if isinstance(event, Received):
                self.owner.received(self, event.message)
            elif isinstance(event, Established):
                self.owner.established(self, event.peer)
            elif isinstance(event, Refused):
                self.owner.refused(self, event.reason)
        if not self.closing:
            self.owner.read_done(self)  # what answers every message of this read can go as one

    def eof_received(self) -> bool | None:
        return None  # the peer is done sending: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.cancel_timer()
        self._drop_pending()
        self.connection.close()
        self.flow.release()
        self.owner.connection_lost(self, exc)
        resolve(self.concluded)
        resolve(self.lost)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- helpers for the transport -----------------------------------------------------------

    def send(self, frame_type: FrameType, body: bytes, linger: float = 0.0) -> None:
        """Queue an encoded message (checked with ``connection.check_send``), to be sealed
        with the others of this turn when it is written (see :meth:`write`)."""
        self._queue((frame_type, body), HEADER_SIZE + len(body) + MAC_SIZE, linger)

    def write(self, data: bytes, linger: float = 0.0) -> None:
        """Queue ``data``; it is written, with whatever else this turn of the loop queued,
        once the turn ends, or at most ``linger`` seconds later (async replication: the
        deltas of several requests then share one write and one wake-up of the peer).
        Bytes queued without a linger take everything queued before them along."""
        self._queue(data, len(data), linger)

    def _queue(self, item: bytes | tuple[FrameType, bytes], size: int, linger: float) -> None:
        if self.transport is None or self.closing:
            return
        self._pending.append(item)
        self._pending_bytes += size
        if self._pending_bytes >= self._send_queue_bytes:
            self.flush()  # large: at once, so the transport's flow control sees it
        elif linger <= 0 and (self._flush is None or self._lingering):
            self._cancel_flush()  # a lingering flush is brought forward to the end of this turn
            self._flush = asyncio.get_running_loop().call_soon(self.flush)
        elif linger > 0 and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(linger, self.flush)
            self._lingering = True

    def flush(self) -> None:
        """Seal and write what is queued now, in the order it was queued."""
        self._cancel_flush()
        pending = self._pending
        if pending and self.transport is not None and not self.transport.is_closing():
            data = pending[0] if len(pending) == 1 and type(pending[0]) is bytes else self._sealed(pending)
            if data:
                self.owner.bytes_sent += len(data)
                self.transport.write(data)
        pending.clear()
        self._pending_bytes = 0

    def _sealed(self, pending: list[bytes | tuple[FrameType, bytes]]) -> bytes:
        """The queued frames, each run of encoded messages sealed as one (or a BATCH)."""
        out: list[bytes] = []
        run: list[tuple[FrameType, bytes]] = []
        try:
            for item in pending:
                if type(item) is bytes:
                    if run:
                        out.append(self.connection.seal(run))
                        run = []
                    out.append(item)
                else:
                    run.append(item)  # type: ignore[arg-type]
            if run:
                out.append(self.connection.seal(run))
        except LocalProtocolError:  # the connection closed after they were queued: they go with it
            pass
        return b"".join(out)

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet taken by the kernel."""
        size = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return size + self._pending_bytes

    def close(self, *, abort: bool = False) -> None:
        """Close the socket; buffered bytes are flushed unless ``abort`` (or after a grace period)."""
        if self.transport is None:
            return
        if abort:
            self.closing = True
            self.cancel_timer()
            self._drop_pending()
            self.transport.abort()
            return
        if self.closing:
            return
        self.flush()  # what was sent last (a LEAVE) goes out before the close
        self.closing = True
        self.connection.close()
        self.cancel_timer()
        # close() waits for the write buffer to drain; a peer that stopped reading
        # would keep the socket open for ever.
        self._timer = asyncio.get_running_loop().call_later(self._send_timeout, self.close_now)
        self.transport.close()

    def _drop_pending(self) -> None:
        self._cancel_flush()
        self._pending.clear()
        self._pending_bytes = 0

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
            self._lingering = False

    def close_now(self) -> None:
        if self.transport is not None and not self.lost.done():
            self.transport.abort()

    def set_timer(self, delay: float, callback: Callable[[], object]) -> None:
        self.cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def endpoint(info: Any) -> Address | None:
    """A socket address as (host, port); an IPv4-mapped IPv6 host as plain IPv4."""
    if not isinstance(info, tuple) or len(info) < 2:
        return None
    host = str(info[0])
    return (host.removeprefix("::ffff:"), int(info[1]))


def no_delay(sock: Any) -> None:
    """Turn Nagle's algorithm off: a small frame (a delta, an acknowledgement) leaves at once
    instead of waiting for the peer's delayed ACK. asyncio does it only for sockets whose
    protocol number is IPPROTO_TCP, which an accepted socket of a listener made by
    ``socket.create_server`` (protocol 0) is not; uvloop does it for every TCP socket."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
