"""Multicast discovery: Tomcat's McastService, with beacons that are authenticated.

Tomcat's heartbeat datagrams are unauthenticated member bytes, so anyone on the LAN
can announce a member (weak point 6). Here a beacon is::

    b"RSMC" | HMAC-SHA256(cluster key, b"RSMC" + body) | body

with ``body`` the msgpack list ``[cluster name, member, leaving]``. A beacon that does
not verify, does not parse, names another cluster, or is our own, is ignored.

A beacon only ever causes a dial: a member joins once a connection to it completed
the authenticated handshake. So a replayed beacon gains an attacker nothing but a
dial, and a replayed "leaving" beacon can only name an incarnation that really left
(a member sends one only when it stops, Tomcat's ``BABY-ALEX``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ..cluster_config import ClusterConfig
from ..errors import RemoteProtocolError, TransportError
from ..wire.messages import MemberInfo

__all__ = ["BEACON_MAGIC", "MAX_BEACON_SIZE", "Beacon", "MulticastDiscovery", "decode_beacon", "encode_beacon"]

logger = logging.getLogger("replisession.net")

BEACON_MAGIC = b"RSMC"
_MAC_SIZE = 32
#: A cluster name (128 characters), a route (64), a host (255) and an incarnation fit
#: well within this, even as 4-byte UTF-8; anything longer is not a beacon.
MAX_BEACON_SIZE = 2048
_MAX_CLUSTER_NAME = 128


@dataclass(frozen=True, slots=True)
class Beacon:
    cluster: str
    member: MemberInfo
    leaving: bool = False


def _mac(cluster_key: bytes, body: bytes) -> bytes:
    # The magic is inside the MAC, so a beacon MAC can never pass for a frame's (whose
    # input starts with an 8-byte sequence number), nor the reverse.
    return hmac.new(cluster_key, BEACON_MAGIC + body, hashlib.sha256).digest()


def encode_beacon(cluster_key: bytes, beacon: Beacon) -> bytes:
    body: bytes = msgpack.packb([beacon.cluster, beacon.member.to_wire(), beacon.leaving], use_bin_type=True)
    return BEACON_MAGIC + _mac(cluster_key, body) + body


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code}")


def decode_beacon(cluster_key: bytes, data: bytes) -> Beacon:
    """The beacon in ``data``; anything else raises RemoteProtocolError."""
    if len(data) > MAX_BEACON_SIZE:
        raise RemoteProtocolError(f"a beacon is at most {MAX_BEACON_SIZE} bytes, this datagram has {len(data)}")
    if not data.startswith(BEACON_MAGIC) or len(data) < len(BEACON_MAGIC) + _MAC_SIZE:
        raise RemoteProtocolError("not a replisession beacon")
    mac = data[len(BEACON_MAGIC) : len(BEACON_MAGIC) + _MAC_SIZE]
    body = data[len(BEACON_MAGIC) + _MAC_SIZE :]
    # Authenticated before parsed: only a holder of the cluster key gets its bytes decoded.
    if not hmac.compare_digest(_mac(cluster_key, body), mac):
        raise RemoteProtocolError("beacon authentication failed: another cluster secret, or tampered")
    try:
        fields = msgpack.unpackb(body, raw=False, ext_hook=_no_extensions, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise RemoteProtocolError(f"beacon body is not valid msgpack: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != 3:
        raise RemoteProtocolError("a beacon body must be [cluster, member, leaving]")
    cluster, member, leaving = fields
    if not isinstance(cluster, str) or len(cluster) > _MAX_CLUSTER_NAME:
        raise RemoteProtocolError(f"a beacon's cluster name must be a string of at most {_MAX_CLUSTER_NAME} characters")
    if type(leaving) is not bool:
        raise RemoteProtocolError("a beacon's leaving flag must be a boolean")
    try:
        return Beacon(cluster, MemberInfo.from_wire(member), leaving)
    except (TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"malformed member in a beacon: {exc}") from exc


class _BeaconProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: MulticastDiscovery) -> None:
        self._owner = owner
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._owner._send_failed(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class MulticastDiscovery:
    """Announces this member to its multicast group, and hears the others' announcements."""

    def __init__(
        self,
        config: ClusterConfig,
        local: MemberInfo,
        *,
        cluster_key: bytes,
        on_member: Callable[[MemberInfo], None],
        on_leave: Callable[[MemberInfo], None],
        ttl: int = 1,
    ) -> None:
        if config.multicast is None:
            raise TransportError("multicast discovery needs a multicast group (REPLISESSION_MULTICAST)")
        self._group = config.multicast
        self._cluster = config.cluster_name
        self._interval = config.heartbeat_interval
        self._interface = _interface(config.listen_host)
        self._local = local
        self._key = cluster_key
        self._on_member = on_member
        self._on_leave = on_leave
        self._ttl = ttl
        self._beacon = encode_beacon(cluster_key, Beacon(config.cluster_name, local))
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _BeaconProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_warned = False
        self._stopped = False

    async def start(self) -> None:
        """Join the group, then send a beacon every heartbeat_interval and hear the others'."""
        if self._transport is not None or self._stopped:
            raise TransportError("multicast discovery can be started only once")
        sock = self._open_socket()
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(lambda: _BeaconProtocol(self), sock=sock)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot use the multicast socket for {self._where}: {exc}") from exc
        self._transport, self._protocol = transport, protocol
        self._task = loop.create_task(self._announce(), name="replisession multicast beacons")
        logger.info("multicast discovery on %s (interface %s)", self._where, self._interface)

    async def stop(self) -> None:
        """Send one "leaving" beacon (Tomcat's BABY-ALEX), leave the group, close the socket."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        transport, protocol = self._transport, self._protocol
        if transport is None or protocol is None:
            return
        self._send(encode_beacon(self._key, Beacon(self._cluster, self._local, leaving=True)))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self._membership_request())
        transport.close()
        await protocol.lost

    # -- internals --------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self._group[0]}:{self._group[1]}"

    async def _announce(self) -> None:
        while True:
            self._send(self._beacon)
            await asyncio.sleep(self._interval)

    def _send(self, datagram: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(datagram, self._group)

    def _send_failed(self, exc: Exception) -> None:
        if not self._send_warned:
            self._send_warned = True
            logger.warning(
                "cannot send multicast beacons to %s: %s (is multicast routed on this network? "
                "use REPLISESSION_MEMBERS otherwise)",
                self._where,
                exc,
            )
        else:
            logger.debug("multicast send to %s failed: %s", self._where, exc)

    def _received(self, data: bytes, addr: Any) -> None:
        if self._stopped:
            return
        try:
            beacon = decode_beacon(self._key, data)
        except RemoteProtocolError as exc:
            logger.debug("ignoring a datagram from %s: %s", addr, exc)
            return
        if beacon.cluster != self._cluster:
            logger.debug("ignoring a beacon of cluster %r from %s", beacon.cluster, addr)
            return
        if beacon.member.id == self._local.id:
            return  # our own, looped back
        if beacon.leaving:
            self._on_leave(beacon.member)
        else:
            self._on_member(beacon.member)

    def _membership_request(self) -> bytes:
        return socket.inet_aton(self._group[0]) + socket.inet_aton(self._interface)

    def _open_socket(self) -> socket.socket:
        group, port = self._group
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            # Several members on one host all bind the group's port and all hear it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # On Linux, binding the group's address keeps out datagrams for other groups
            # on the same port; elsewhere only the wildcard can receive multicast.
            sock.bind((group if sys.platform.startswith("linux") else "", port))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._membership_request())
            if self._interface != "0.0.0.0":
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self._ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # members on this host hear us
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot join the multicast group {self._where}: {exc}") from exc
        return sock


def _interface(listen_host: str) -> str:
    """The interface for multicast: the listen address if it is one IPv4 address, else any."""
    try:
        address = ipaddress.ip_address(listen_host)
    except ValueError:
        return "0.0.0.0"
    return str(address) if isinstance(address, ipaddress.IPv4Address) else "0.0.0.0"
