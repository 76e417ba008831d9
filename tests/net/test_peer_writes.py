"""How a connection batches its writes: everything queued in one turn of the loop leaves in
one write at the end of the turn; async replication may linger so that several requests'
deltas share one write; order is always kept, and closing flushes first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replisession.net.peer import PeerProtocol
from replisession.wire.auth import derive_cluster_key
from replisession.wire.connection import PeerConnection, Received
from replisession.wire.frames import FrameDecoder
from replisession.wire.messages import Data, FrameType, Leave, MemberInfo, SendMode, encode_message


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class Owner:
    bytes_sent = 0
    bytes_received = 0


def protocol(send_queue_bytes: int = 1024) -> tuple[PeerProtocol, FakeTransport]:
    # A real PeerConnection (never used for these raw writes): the peer module may be compiled,
    # and compiled code checks the types it is given.
    connection = PeerConnection(initiator=True, local=ALICE, cluster="c", cluster_key=derive_cluster_key(b"w"))
    peer = PeerProtocol(
        Owner(),  # type: ignore[arg-type]
        connection,
        None,
        handshake_timeout=5.0,
        send_queue_bytes=send_queue_bytes,
        send_timeout=1.0,
    )
    transport = FakeTransport()
    peer.transport = transport  # type: ignore[assignment]
    return peer, transport


async def next_turns(count: int = 2) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_frames_of_one_turn_leave_in_one_write_at_its_end() -> None:
    peer, transport = protocol()
    peer.write(b"a")
    peer.write(b"b")
    assert transport.writes == []
    assert peer.buffered == 2
    await next_turns()
    assert transport.writes == [b"ab"]
    assert peer.buffered == 0
    assert peer.owner.bytes_sent == 2
    peer.write(b"c")
    await next_turns()
    assert transport.writes == [b"ab", b"c"]


@pytest.mark.asyncio
async def test_a_lingering_write_waits_and_gathers_what_follows() -> None:
    peer, transport = protocol()
    loop = asyncio.get_running_loop()
    peer.write(b"1", linger=0.05)
    await next_turns()
    assert transport.writes == []  # still lingering after the turn ended
    peer.write(b"2", linger=0.05)
    started = loop.time()
    while not transport.writes:
        assert loop.time() - started < 5.0, "the lingering write never left"
        await asyncio.sleep(0.01)
    assert transport.writes == [b"12"]


@pytest.mark.asyncio
async def test_a_write_without_linger_takes_lingering_ones_along_in_order() -> None:
    peer, transport = protocol()
    peer.write(b"delta", linger=60.0)
    peer.write(b"ack")
    await next_turns()
    assert transport.writes == [b"deltaack"]


@pytest.mark.asyncio
async def test_a_large_queue_is_written_at_once() -> None:
    peer, transport = protocol(send_queue_bytes=8)
    peer.write(b"1234", linger=60.0)
    assert transport.writes == []
    peer.write(b"5678", linger=60.0)
    assert transport.writes == [b"12345678"]  # the transport's flow control must see it


@pytest.mark.asyncio
async def test_closing_flushes_first_and_aborting_drops() -> None:
    peer, transport = protocol()
    peer.write(b"leave", linger=60.0)
    peer.close()
    assert transport.writes == [b"leave"]
    assert transport.closed
    peer.write(b"late")  # a closing connection takes nothing more
    await next_turns()
    assert transport.writes == [b"leave"]

    other, other_transport = protocol()
    other.write(b"never")
    other.close(abort=True)
    await next_turns()
    assert other_transport.writes == []
    assert other_transport.aborted
    assert other.buffered == 0


@pytest.mark.asyncio
async def test_nothing_is_written_after_the_connection_was_lost() -> None:
    peer, transport = protocol()
    peer.write(b"x", linger=60.0)
    lost: Any = None
    peer.owner.connection_lost = lambda protocol, exc: None  # type: ignore[attr-defined]
    peer.connection_lost(lost)
    await next_turns()
    assert transport.writes == []
    assert peer.buffered == 0


ALICE = MemberInfo("alice", "127.0.0.1", 4001, "a" * 32)
BOB = MemberInfo("bob", "127.0.0.1", 4002, "b" * 32)


def established_pair() -> tuple[PeerConnection, PeerConnection]:
    key = derive_cluster_key(b"peer-writes")
    ours = PeerConnection(initiator=True, local=ALICE, cluster="c", cluster_key=key)
    theirs = PeerConnection(initiator=False, local=BOB, cluster="c", cluster_key=key)
    theirs.receive_data(ours.initiate())
    ours.receive_data(theirs.data_to_send())
    theirs.receive_data(ours.data_to_send())
    return ours, theirs


@pytest.mark.asyncio
async def test_messages_of_one_turn_are_sealed_as_one_batch_frame_in_order() -> None:
    peer, transport = protocol()
    ours, theirs = established_pair()
    peer.connection = ours
    deltas = [Data(n, SendMode.SYNC, "delta", {"n": n}) for n in range(3)]
    for message in deltas:
        peer.send(*encode_message(message))
    peer.write(b"")  # already sealed bytes (a refusal, in real life) keep their place between runs
    peer.send(*encode_message(Leave()))
    assert transport.writes == []
    await next_turns()
    [wire] = transport.writes
    assert [frame.frame_type for frame in FrameDecoder().feed(wire)] == [FrameType.BATCH, FrameType.LEAVE]
    assert theirs.receive_data(wire) == [Received(message) for message in [*deltas, Leave()]]
    assert peer.owner.bytes_sent == len(wire)


@pytest.mark.asyncio
async def test_messages_queued_on_a_connection_that_closed_meanwhile_are_dropped() -> None:
    peer, transport = protocol()
    ours, _ = established_pair()
    peer.connection = ours
    peer.write(b"sealed before")
    peer.send(*encode_message(Leave()))
    ours.close()  # as the transport does when the member goes
    await next_turns()
    assert transport.writes == [b"sealed before"]


class Silent(Owner):
    """An owner that answers nothing (a heartbeat, the peer's own async deltas)."""

    def received(self, protocol: PeerProtocol, message: Any) -> None:
        pass

    def read_done(self, protocol: PeerProtocol) -> None:
        pass


@pytest.mark.asyncio
async def test_a_read_that_produced_nothing_leaves_lingering_writes_to_their_timer() -> None:
    ours, theirs = established_pair()
    peer = PeerProtocol(
        Silent(),  # type: ignore[arg-type]
        theirs,
        None,
        handshake_timeout=5.0,
        send_queue_bytes=1024,
        send_timeout=1.0,
    )
    transport = FakeTransport()
    peer.transport = transport  # type: ignore[assignment]
    peer.write(b"async delta", linger=60.0)
    peer.data_received(ours.send(Data(1, SendMode.ASYNC, "delta", {})))
    await next_turns()
    assert transport.writes == []  # async_linger still gathers deltas while the peer talks
    peer.flush()
    assert transport.writes == [b"async delta"]
