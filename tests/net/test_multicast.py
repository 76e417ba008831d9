"""Multicast discovery: the beacon codec without sockets, then real beacons on 127.0.0.1 (if routed)."""

from __future__ import annotations

import asyncio
import random
import socket

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replisession.errors import RemoteProtocolError, TransportError
from replisession.net.multicast import (
    BEACON_MAGIC,
    MAX_BEACON_SIZE,
    Beacon,
    MulticastDiscovery,
    _mac,
    decode_beacon,
    encode_beacon,
)
from replisession.wire.auth import derive_cluster_key
from replisession.wire.messages import MemberInfo

from .helpers import HOST, config, incarnation

KEY = derive_cluster_key(b"correct horse battery staple")
MEMBER = MemberInfo("edge1", "10.0.0.2", 4000, "0123456789abcdef0123456789abcdef")


def signed(body: object, key: bytes = KEY) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return BEACON_MAGIC + _mac(key, packed) + packed


@pytest.mark.parametrize("leaving", [False, True])
def test_a_beacon_round_trips(leaving: bool) -> None:
    beacon = Beacon("prod", MEMBER, leaving)
    data = encode_beacon(KEY, beacon)
    assert data.startswith(BEACON_MAGIC)
    assert decode_beacon(KEY, data) == beacon


def test_every_tampered_byte_is_rejected() -> None:
    data = encode_beacon(KEY, Beacon("prod", MEMBER))
    for index in range(len(BEACON_MAGIC), len(data)):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(RemoteProtocolError, match="beacon authentication failed"):
            decode_beacon(KEY, bytes(tampered))


def test_another_secret_is_rejected() -> None:
    data = encode_beacon(derive_cluster_key(b"another secret"), Beacon("prod", MEMBER))
    with pytest.raises(RemoteProtocolError, match="beacon authentication failed"):
        decode_beacon(KEY, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a replisession beacon"),
        (b"RSMC" + bytes(31), "not a replisession beacon"),
        (b"XXXX" + encode_beacon(KEY, Beacon("prod", MEMBER))[4:], "not a replisession beacon"),
        (b"RSMC" + bytes(MAX_BEACON_SIZE), f"at most {MAX_BEACON_SIZE} bytes"),
        (signed(["prod", MEMBER.to_wire()]), r"must be \[cluster, member, leaving\]"),
        (signed({"cluster": "prod"}), r"must be \[cluster, member, leaving\]"),
        (signed(["x" * 129, MEMBER.to_wire(), False]), "cluster name must be a string"),
        (signed([b"prod", MEMBER.to_wire(), False]), "cluster name must be a string"),
        (signed(["prod", MEMBER.to_wire(), 0]), "leaving flag must be a boolean"),
        (signed(["prod", [None, "h", 0, "0" * 32], False]), "port"),
        (signed(["prod", [None, "h", 1], False]), "a member must be"),
        (signed(["prod", ["r", "h", 1, "not hex"], False]), "incarnation"),
        (BEACON_MAGIC + _mac(KEY, b"\xc1") + b"\xc1", "not valid msgpack"),
        (BEACON_MAGIC + _mac(KEY, b"\xd4\x01x") + b"\xd4\x01x", "not valid msgpack"),  # extension type 1
    ],
)
def test_malformed_beacons_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_beacon(KEY, data)


@given(st.binary(max_size=MAX_BEACON_SIZE + 8))
def test_any_datagram_is_a_beacon_or_a_remote_protocol_error(data: bytes) -> None:
    try:
        decode_beacon(KEY, data)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=256))
def test_any_signed_body_is_a_beacon_or_a_remote_protocol_error(body: bytes) -> None:
    try:
        decode_beacon(KEY, BEACON_MAGIC + _mac(KEY, body) + body)
    except RemoteProtocolError:
        pass


def test_discovery_needs_a_group() -> None:
    with pytest.raises(TransportError, match="needs a multicast group"):
        MulticastDiscovery(config(), MEMBER, cluster_key=KEY, on_member=print, on_leave=print)


# -- real beacons ---------------------------------------------------------------------------------


def _group() -> tuple[str, int]:
    """A group of the organisation-local scope, and a port, unlikely to be shared with another run."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    return f"239.255.{random.randrange(256)}.{random.randrange(1, 255)}", port


def _can_send(group: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(HOST))
            sock.sendto(b"probe", group)
        except OSError:
            return False
    return True


class _Heard:
    def __init__(self) -> None:
        self.joined: list[MemberInfo] = []
        self.left: list[MemberInfo] = []
        self.changed = asyncio.Event()

    def member(self, member: MemberInfo) -> None:
        self.joined.append(member)
        self.changed.set()

    def leave(self, member: MemberInfo) -> None:
        self.left.append(member)
        self.changed.set()

    async def until(self, condition: object, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                while not condition():  # type: ignore[operator]
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


@pytest.mark.multicast
@pytest.mark.asyncio
async def test_members_on_one_host_hear_each_other_and_the_leaving_beacon() -> None:
    group = _group()
    if not _can_send(group):
        pytest.skip(f"cannot send to the multicast group {group[0]} on {HOST} (no multicast route?)")
    cfg = config(multicast=group, heartbeat_interval=0.05, drop_time=1.0)
    other_cluster = config(multicast=group, heartbeat_interval=0.05, drop_time=1.0, cluster_name="other")
    a, b, c = (MemberInfo(None, HOST, port, incarnation()) for port in (4001, 4002, 4003))
    heard_a, heard_b = _Heard(), _Heard()
    one = MulticastDiscovery(cfg, a, cluster_key=KEY, on_member=heard_a.member, on_leave=heard_a.leave)
    two = MulticastDiscovery(cfg, b, cluster_key=KEY, on_member=heard_b.member, on_leave=heard_b.leave)
    stranger = MulticastDiscovery(other_cluster, c, cluster_key=KEY, on_member=print, on_leave=print)
    await one.start()
    try:
        await two.start()
        await stranger.start()
        if not await heard_a.until(lambda: b in heard_a.joined, 3.0):
            pytest.skip(f"no beacon arrived within 3 s on {group[0]}:{group[1]} via {HOST}")
        assert await heard_b.until(lambda: a in heard_b.joined, 3.0)
        await stranger.stop()
        await two.stop()
        assert await heard_a.until(lambda: heard_a.left == [b], 3.0)
        assert set(heard_a.joined) == {b}  # never itself, never the other cluster
        assert heard_b.left == []
        assert set(heard_b.joined) == {a}
    finally:
        await two.stop()
        await stranger.stop()
        await one.stop()
