"""The peer channel: one authenticated TCP connection per pair of members, on asyncio.

Tomcat's Tribes keeps a pool of up to 25 connections per destination and sends on
several at once, so two messages to one member can arrive out of order (weak point
4). Here a pair of members shares exactly one connection, and frames are handed to
the node in the order they arrived.

Each connection is a thin :class:`asyncio.Protocol` (``peer.py``) around a sans-IO
:class:`~replisession.wire.connection.PeerConnection`: bytes go in and out, events
come back; the handshake, authentication and framing live in the wire layer. This
module adds what needs sockets and timers: binding, dialling, a handshake deadline,
de-duplication of crossed dials, write-side flow control, and logs. All of it runs on
the event loop's thread, and so do the listener's callbacks.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Protocol

from ..cluster_config import ClusterConfig
from ..errors import RemoteProtocolError, TransportError
from ..wire.auth import derive_cluster_key
from ..wire.connection import PeerConnection
from ..wire.messages import FrameType, MemberInfo, Message, encode_message
from . import tls
from .listen import bind_address, claim
from .peer import PeerProtocol, resolve

__all__ = ["HANDSHAKE_TIMEOUT", "TcpTransport", "TransportListener"]

logger = logging.getLogger("replisession.net")

Address = tuple[str, int]

#: A connection must complete the handshake within this many seconds, or it is closed:
#: an unauthenticated peer cannot hold a socket open (slowloris).
HANDSHAKE_TIMEOUT = 5.0
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_SELF_DIAL = "that address is this member"
_CONFIG_HINT = "check REPLISESSION_CLUSTER_SECRET / REPLISESSION_CLUSTER_NAME"
_TLS_HINT = "check REPLISESSION_TLS_CERT / REPLISESSION_TLS_KEY / REPLISESSION_TLS_CA"


class TransportListener(Protocol):
    """What the transport tells the node; every call happens on the event loop thread."""

    def on_connected(self, peer: MemberInfo) -> None: ...

    def on_message(self, peer: MemberInfo, message: Message) -> None: ...

    def on_read_done(self, peer: MemberInfo) -> None: ...  # every message of one read from peer was handed over

    def on_disconnected(self, peer: MemberInfo) -> None: ...

    def on_dial_failed(self, address: Address, refused: bool, reason: str) -> None: ...


class _LogOnce:
    """Which (remote, reason) pairs were logged at WARNING already.

    A misconfigured peer redials every few seconds; its first refusal is worth a
    warning, the next thousand are not. Bounded, so a flood of distinct reasons
    cannot grow it without limit.
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._seen: set[tuple[object, str]] = set()

    def first(self, remote: object, reason: str) -> bool:
        key = (remote, reason)
        if key in self._seen:
            return False
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(key)
        return True


class TcpTransport:
    """Every peer connection of one member, and its listening socket."""

    def __init__(self, config: ClusterConfig, listener: TransportListener, *, incarnation: str) -> None:
        self.config = config
        self.handshake_timeout = HANDSHAKE_TIMEOUT
        self._listener = listener
        self._incarnation = incarnation
        self._cluster_key = derive_cluster_key(config.secret)
        self._connect_timeout = 2 * config.probe_timeout
        self._server_ssl = tls.server_context(config) if config.tls else None
        self._client_ssl = tls.client_context(config) if config.tls else None
        self._local: MemberInfo | None = None
        self._server: asyncio.Server | None = None
        self._closed = False
        self._peers: dict[str, PeerProtocol] = {}  # member id -> its one established connection
        self._connections: set[PeerProtocol] = set()
        self._dialing: dict[Address, asyncio.Task[None]] = {}
        # Both ends of a connection we made to ourselves are ours: our outbound socket's
        # local address is our inbound socket's remote address.
        self._outbound_ends: dict[Address, PeerProtocol] = {}
        self._inbound_ends: dict[Address, PeerProtocol] = {}
        self._warned = _LogOnce()
        self.bytes_sent = 0  # frames written after the handshake; read by the member's report
        self.bytes_received = 0  # everything read, handshakes included

    @property
    def local(self) -> MemberInfo:
        if self._local is None:
            raise TransportError("the transport has not been started")
        return self._local

    # -- the node's API ------------------------------------------------------------------------

    async def start(self) -> MemberInfo:
        """Bind the first free port of ``listen_ports`` (Tomcat's autoBind) and start accepting."""
        if self._server is not None or self._closed:
            raise TransportError("the transport can be started only once")
        config = self.config
        host = config.listen_host
        advertised = await self._advertised_host(host)
        first, last = config.listen_ports
        try:
            family, address = await bind_address(host)
        except OSError as exc:
            raise TransportError(f"cannot listen on {_format(host, first)}: {exc}") from exc
        loop = asyncio.get_running_loop()
        for port in range(first, last + 1):
            try:
                sock = claim(family, address, port)  # bound and listening: see listen.py
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise TransportError(f"cannot listen on {_format(host, port)}: {exc}") from exc
            server = await loop.create_server(
                lambda: self._new_protocol(None),
                sock=sock,
                ssl=self._server_ssl,
                ssl_handshake_timeout=self.handshake_timeout if self._server_ssl is not None else None,
                start_serving=False,  # not before self._local is set: connections need it (the kernel queues them)
            )
            bound = sock.getsockname()[1]
            try:
                self._local = MemberInfo(config.route, advertised, bound, self._incarnation)
            except RemoteProtocolError as exc:
                server.close()
                await server.wait_closed()
                raise TransportError(f"cannot describe this member: {exc}") from exc
            self._server = server
            await server.start_serving()
            logger.info("peer channel listening on %s as %s", _format(host, bound), self._local)
            return self._local
        raise TransportError(f"no free port in {_format(host, first)}-{last} (listen_ports): all are in use")

    def dial(self, address: Address) -> None:
        """Connect to ``address`` in the background; the outcome comes as on_connected or on_dial_failed."""
        if self._closed or address in self._dialing:
            return
        host, port = address
        self._dialing[address] = asyncio.get_running_loop().create_task(
            self._dial(address), name=f"replisession dial {_format(host, port)}"
        )

    def send(self, peer_id: str, message: Message | tuple[FrameType, bytes], linger: float = 0.0) -> bool:
        """Queue ``message`` on the peer's connection, to leave at the end of this turn of
        the loop or within ``linger`` seconds (see :meth:`PeerProtocol.write`); False if
        there is no connection. ``message`` may come encoded (``encode_message``), so that
        a message for several members is encoded once.

        A message the wire layer cannot encode raises its LocalProtocolError; the
        connection stays usable.
        """
        protocol = self._peers.get(peer_id)
        if protocol is None or protocol.closing or protocol.transport is None or protocol.transport.is_closing():
            return False
        frame_type, body = encode_message(message) if isinstance(message, Message) else message
        protocol.connection.check_send(frame_type, body)
        protocol.send(frame_type, body, linger)  # sealed when written, with the others of this turn
        return True

    def buffered(self, peer_id: str) -> int:
        """Bytes waiting in the peer's write buffer (0 if there is no connection)."""
        protocol = self._peers.get(peer_id)
        return 0 if protocol is None else protocol.buffered

    async def wait_writable(self, peer_id: str) -> None:
        """Return when the peer's write buffer is below ``send_queue_bytes``, or the peer is gone."""
        protocol = self._peers.get(peer_id)
        if protocol is not None:
            protocol.flush()  # hand what this turn queued to the transport, whose buffer is watched
            await protocol.flow.drain()

    def disconnect(self, peer_id: str) -> None:
        """Close the connection to a member; on_disconnected follows (soon, not from within this call)."""
        protocol = self._peers.pop(peer_id, None)
        if protocol is None:
            return
        protocol.close()
        peer = protocol.peer
        assert peer is not None
        asyncio.get_running_loop().call_soon(self._notify_disconnected, peer)

    async def close(self) -> None:
        """Stop listening and close every connection; no callback is made once this is called."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        dials = list(self._dialing.values())
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        connections = list(self._connections)
        for protocol in connections:
            protocol.close()  # flushes what was sent last (a LEAVE), or aborts after send_timeout
        if connections:
            await asyncio.wait([p.lost for p in connections])
        if self._server is not None:
            await self._server.wait_closed()

    # -- called by the connections ---------------------------------------------------------------

    def connection_made(self, protocol: PeerProtocol) -> bool:
        """Register a new socket; False if it was closed at once."""
        if self._closed:
            protocol.close(abort=True)
            return False
        self._connections.add(protocol)
        end = protocol.local_end if protocol.initiator else protocol.remote_end
        if end is not None:
            ours, theirs = (
                (self._outbound_ends, self._inbound_ends)
                if protocol.initiator
                else (self._inbound_ends, self._outbound_ends)
            )
            ours[end] = protocol
            other = theirs.get(end)
            if other is not None:
                self._dialled_ourselves(*((protocol, other) if protocol.initiator else (other, protocol)))
                return False
        return True

    def established(self, protocol: PeerProtocol, peer: MemberInfo) -> None:
        protocol.cancel_timer()
        protocol.peer = peer
        resolve(protocol.concluded)
        if protocol.dialled is not None:
            self._end_dial(protocol.dialled)
        current = self._peers.get(peer.id)
        if current is not None and current.closing:
            # The old connection is on its way out (the node will not hear of it): hand
            # over to the new one, which the node already counts as connected.
            self._peers[peer.id] = protocol
            return
        if current is None:
            self._peers[peer.id] = protocol
            logger.debug("connected to %s (%s)", peer, "dialled" if protocol.initiator else "accepted")
            if not self._closed:
                self._listener.on_connected(peer)
            return
        # Both members dialled each other at once. Both keep the connection whose
        # initiator has the smaller incarnation (then the initiator's socket address,
        # which both ends see alike), so they agree without a word.
        winner = min(current, protocol, key=self._rank)
        loser = protocol if winner is current else current
        self._peers[peer.id] = winner
        logger.debug("two connections with %s: keeping the one %s dialled", peer, "we" if winner.initiator else "it")
        self._retire(loser, active=winner.initiator)

    def received(self, protocol: PeerProtocol, message: Message) -> None:
        if protocol.peer is not None and not self._closed:
            self._listener.on_message(protocol.peer, message)

    def read_done(self, protocol: PeerProtocol) -> None:
        if protocol.peer is not None and not self._closed:
            self._listener.on_read_done(protocol.peer)

    def refused(self, protocol: PeerProtocol, reason: str) -> None:
        # The reason is the peer's unauthenticated text: shown with repr, never trusted.
        if self._warned.first(protocol.dialled, reason):
            logger.warning("refused by %s: %r — %s", protocol.remote, reason, _CONFIG_HINT)
        else:
            logger.debug("refused by %s: %r", protocol.remote, reason)
        protocol.close(abort=True)
        self._dial_failed(protocol, refused=True, reason=reason)

    def protocol_error(self, protocol: PeerProtocol, exc: RemoteProtocolError) -> None:
        reason = str(exc)
        handshake = protocol.peer is None
        key = protocol.dialled or (protocol.remote_end[0] if protocol.remote_end else None)
        if self._warned.first(key, reason):
            logger.warning(
                "dropping the connection %s %s: %s", "to" if protocol.initiator else "from", protocol.remote, reason
            )
        else:
            logger.debug("dropping the connection with %s: %s", protocol.remote, reason)
        if handshake and not protocol.initiator:
            # Tell a dialling peer why, so its operator sees the cause on its side too.
            protocol.write(protocol.connection.refusal(reason))
        protocol.close()
        if handshake:
            self._dial_failed(protocol, refused=True, reason=reason)

    def expired(self, protocol: PeerProtocol) -> None:
        """The handshake deadline passed (or a retired connection's grace period)."""
        if protocol.peer is not None:
            protocol.close()  # a retired connection the peer did not close
            return
        reason = f"no handshake within {self.handshake_timeout:g} s"
        if protocol.initiator:
            logger.debug("giving up on %s: %s", protocol.remote, reason)
        elif self._warned.first(protocol.remote_end[0] if protocol.remote_end else None, reason):
            logger.warning("dropping the connection from %s: %s", protocol.remote, reason)
        protocol.close(abort=True)
        self._dial_failed(protocol, refused=False, reason=reason)

    def connection_lost(self, protocol: PeerProtocol, exc: Exception | None) -> None:
        self._connections.discard(protocol)
        for ends in (self._outbound_ends, self._inbound_ends):
            for end in (protocol.local_end, protocol.remote_end):
                if end is not None and ends.get(end) is protocol:
                    del ends[end]
        peer = protocol.peer
        if peer is None:
            if protocol.initiator and self._client_ssl is not None and not protocol.concluded.done():
                # With TLS 1.3 the server checks our certificate after our side of the TLS
                # handshake is over, and asyncio closes without a word when it fails. A peer
                # of ours always says REFUSE before it closes a handshake, so silence here
                # is (almost always) its TLS layer refusing us.
                if isinstance(exc, ssl.SSLError):
                    reason = f"TLS: {exc}"
                else:
                    reason = "TLS: the peer closed the connection during the handshake; does it trust our certificate?"
                if self._warned.first(protocol.dialled, reason):
                    logger.warning("TLS with %s failed: %s — %s", protocol.remote, reason, _TLS_HINT)
                self._dial_failed(protocol, refused=True, reason=reason)
            else:
                self._dial_failed(protocol, refused=False, reason=str(exc) if exc else "closed during the handshake")
        elif self._peers.get(peer.id) is protocol:
            del self._peers[peer.id]
            logger.debug("disconnected from %s: %s", peer, exc or "closed")
            self._notify_disconnected(peer)

    # -- internals --------------------------------------------------------------------------------

    def _new_protocol(self, dialled: Address | None) -> PeerProtocol:
        connection = PeerConnection(
            initiator=dialled is not None,
            local=self.local,
            cluster=self.config.cluster_name,
            cluster_key=self._cluster_key,
            max_frame_size=self.config.max_frame_size,
            compress_threshold=self.config.compress_threshold,
        )
        return PeerProtocol(
            self,
            connection,
            dialled,
            handshake_timeout=self.handshake_timeout,
            send_queue_bytes=self.config.send_queue_bytes,
            send_timeout=self.config.send_timeout,
        )

    async def _dial(self, address: Address) -> None:
        host, port = address
        loop = asyncio.get_running_loop()
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, protocol = await loop.create_connection(
                        lambda: self._new_protocol(address),
                        host,
                        port,
                        ssl=self._client_ssl,
                        ssl_handshake_timeout=self._connect_timeout if self._client_ssl is not None else None,
                    )
            except ssl.SSLError as exc:  # before OSError, its base class: this one is a refusal
                reason = f"TLS: {exc}"
                if self._warned.first(address, reason):
                    logger.warning("TLS with %s failed: %s — %s", _format(host, port), reason, _TLS_HINT)
                self._end_dial(address, refused=True, reason=reason)
                return
            except (OSError, TimeoutError) as exc:
                reason = str(exc) or f"no connection within {self._connect_timeout:g} s"
                logger.debug("cannot connect to %s: %s", _format(host, port), reason)
                self._end_dial(address, refused=False, reason=reason)
                return
            await protocol.concluded  # the dial is in flight until the handshake ended
        finally:
            if self._dialing.get(address) is asyncio.current_task():
                del self._dialing[address]

    def _end_dial(self, address: Address, *, refused: bool | None = None, reason: str = "") -> None:
        """The dial to ``address`` is over; ``refused`` not None: it failed, tell the node."""
        # Forgotten before the node hears of it, so that it may dial again at once.
        self._dialing.pop(address, None)
        if refused is not None and not self._closed:
            self._listener.on_dial_failed(address, refused, reason)

    def _dial_failed(self, protocol: PeerProtocol, *, refused: bool, reason: str) -> None:
        if protocol.concluded.done():
            return  # told already
        resolve(protocol.concluded)
        if protocol.dialled is not None:
            self._end_dial(protocol.dialled, refused=refused, reason=reason)

    def _dialled_ourselves(self, outbound: PeerProtocol, inbound: PeerProtocol) -> None:
        # A seed list naming our own address under another name, or a wildcard bind:
        # both ends are ours. Neither is a peer's misconfiguration, so no warning.
        logger.debug("%s is this member", outbound.remote)
        inbound.close(abort=True)
        outbound.close(abort=True)
        self._dial_failed(inbound, refused=True, reason=_SELF_DIAL)
        self._dial_failed(outbound, refused=True, reason=_SELF_DIAL)

    def _retire(self, protocol: PeerProtocol, *, active: bool) -> None:
        """Stop sending on a duplicate connection, but keep delivering what it still brings.

        The initiator of the kept connection half-closes the duplicate once its buffered
        bytes are flushed; the other end closes it on that end-of-file. Whatever either
        end sent on it before it learnt of the duplicate still arrives (over TLS, which
        cannot half-close, it may be lost, as a heartbeat is). A peer that never closes
        its end is cut off after the handshake timeout.
        """
        protocol.set_timer(self.handshake_timeout, lambda: self.expired(protocol))
        transport = protocol.transport
        if active and transport is not None and not transport.is_closing():
            if transport.can_write_eof():
                protocol.flush()  # what was queued this turn still leaves before the end-of-file
                transport.write_eof()
            else:
                protocol.close()

    def _rank(self, protocol: PeerProtocol) -> tuple[str, tuple[str, int]]:
        assert protocol.peer is not None
        initiator = self.local.id if protocol.initiator else protocol.peer.id
        end = protocol.local_end if protocol.initiator else protocol.remote_end
        return initiator, end or ("", 0)

    def _notify_disconnected(self, peer: MemberInfo) -> None:
        if not self._closed:
            self._listener.on_disconnected(peer)

    async def _advertised_host(self, host: str) -> str:
        if host not in _WILDCARDS:
            return host
        loop = asyncio.get_running_loop()
        try:
            address = await loop.run_in_executor(None, socket.gethostbyname, socket.gethostname())
        except OSError as exc:
            raise TransportError(
                f"listening on {host!r}, this member must advertise an address, but this host's name "
                f"does not resolve ({exc}): set listen_host (REPLISESSION_LISTEN) to this host's address"
            ) from exc
        if address.startswith("127."):
            logger.warning(
                "listening on %r, this member advertises %s, its host name's address, which other hosts "
                "cannot reach: set REPLISESSION_LISTEN to this host's address",
                host,
                address,
            )
        return address


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
