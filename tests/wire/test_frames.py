"""Framing: header checks before any body is buffered, arbitrary chunking, bounded compression."""

from __future__ import annotations

import random
import re
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replisession.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from replisession.wire.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_COMPRESSED,
    HEADER_SIZE,
    MAC_SIZE,
    FrameDecoder,
    RawFrame,
    compress,
    decompress,
    encode_frame,
    frame_header,
)
from replisession.wire.messages import PROTOCOL_VERSION

MAX = 1024  # a small limit keeps the property tests fast

frames_strategy = st.builds(
    lambda frame_type, flags, body, mac: RawFrame(
        frame_header(frame_type, flags, len(body)), frame_type, flags, body, mac
    ),
    st.integers(0, 255),
    st.sampled_from([0, FLAG_COMPRESSED]),
    st.binary(max_size=MAX),
    st.binary(min_size=MAC_SIZE, max_size=MAC_SIZE),
)


def wire(frame: RawFrame) -> bytes:
    return encode_frame(frame.frame_type, frame.body, frame.flags, frame.mac)


def test_constants() -> None:
    assert (HEADER_SIZE, MAC_SIZE, DEFAULT_MAX_FRAME_SIZE) == (9, 32, 16 * 1024 * 1024)
    assert FrameDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE


def test_layout_is_the_documented_one() -> None:
    data = encode_frame(6, b"body", FLAG_COMPRESSED, b"m" * 32)
    assert data == b"RS" + bytes([PROTOCOL_VERSION, 6, 1]) + struct.pack(">I", 4) + b"body" + b"m" * 32
    assert frame_header(6, 1, 4) == data[:9]


@given(frames_strategy)
def test_a_frame_round_trips(frame: RawFrame) -> None:
    decoder = FrameDecoder(MAX)
    assert decoder.feed(wire(frame)) == [frame]
    assert decoder.buffered == 0


@given(st.lists(frames_strategy, max_size=6), st.data())
def test_any_chunking_of_a_stream_yields_exactly_its_frames(frames: list[RawFrame], data: st.DataObject) -> None:
    stream = b"".join(wire(frame) for frame in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder(MAX)
    received: list[RawFrame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        received += decoder.feed(stream[start:end])
        # DoS bound: never more than one incomplete frame is held.
        assert decoder.buffered < HEADER_SIZE + MAX + MAC_SIZE
    assert received == frames
    assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    frames = [RawFrame(frame_header(t, 0, len(b)), t, 0, b, bytes([t]) * 32) for t, b in [(1, b""), (7, b"xyz")]]
    decoder = FrameDecoder(MAX)
    received = [f for byte in b"".join(map(wire, frames)) for f in decoder.feed(bytes([byte]))]
    assert received == frames


def test_an_empty_feed_is_nothing() -> None:
    assert FrameDecoder().feed(b"") == []


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(MAX)
    header = frame_header(6, 0, MAX + 1)
    assert decoder.feed(header[:8]) == []
    with pytest.raises(
        RemoteProtocolError, match=f"^frame body of {MAX + 1} bytes exceeds the maximum frame size of {MAX} bytes$"
    ):
        decoder.feed(header[8:])  # only the 9 header bytes were ever fed


def test_a_frame_of_exactly_the_maximum_size_is_accepted() -> None:
    frame = RawFrame(frame_header(6, 0, MAX), 6, 0, b"x" * MAX, b"m" * 32)
    assert FrameDecoder(MAX).feed(wire(frame)) == [frame]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "bad frame magic b'GE': the peer does not speak the replisession protocol"),
        (struct.pack(">2sBBBI", b"RS", 4, 6, 0, 0), "unsupported frame version 4 (we speak 3)"),
        (struct.pack(">2sBBBI", b"RS", 2, 6, 0, 0), "unsupported frame version 2 (we speak 3)"),
        (struct.pack(">2sBBBI", b"RS", 3, 6, 0x02, 0), "unknown frame flags 0x02"),
        (struct.pack(">2sBBBI", b"RS", 3, 6, 0x81, 0), "unknown frame flags 0x81"),
    ],
)
def test_bad_headers_are_refused(header: bytes, message: str) -> None:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError, match=f"^{re.escape(message)}$"):
        decoder.feed(header)
    with pytest.raises(RemoteProtocolError, match=r"^the frame stream failed earlier and cannot be resumed$"):
        decoder.feed(wire(RawFrame(frame_header(1, 0, 0), 1, 0, b"", b"m" * 32)))


def test_a_bad_frame_after_good_ones_in_one_chunk_fails_the_chunk() -> None:
    good = encode_frame(4, b"ok", 0, b"m" * 32)
    with pytest.raises(RemoteProtocolError, match=r"^bad frame magic"):
        FrameDecoder().feed(good + b"XX" + good[2:])


@pytest.mark.parametrize("size", [0, -1, 2**32, 1.5, True])
def test_decoder_limit_must_be_a_positive_u32(size: object) -> None:
    with pytest.raises(ConfigError, match=r"^max_frame_size must be an integer in \[1, 4294967295\], not "):
        FrameDecoder(size)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame_type", "flags", "length", "message"),
    [
        (256, 0, 0, "frame type must be an integer in [0, 255], not 256"),
        (-1, 0, 0, "frame type must be an integer in [0, 255], not -1"),
        (True, 0, 0, "frame type must be an integer in [0, 255], not True"),
        (1, 2, 0, "unknown frame flags 2"),
        (1, -1, 0, "unknown frame flags -1"),
        (1, 1.0, 0, "unknown frame flags 1.0"),
        (1, 0, 2**32, "a frame body of 4294967296 bytes does not fit the length field"),
        (1, 0, -1, "a frame body of -1 bytes does not fit the length field"),
    ],
)
def test_frame_header_refuses_what_cannot_be_framed(frame_type: int, flags: int, length: int, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"^{re.escape(message)}$"):
        frame_header(frame_type, flags, length)


def test_encode_frame_needs_a_whole_mac() -> None:
    with pytest.raises(LocalProtocolError, match=r"^a frame MAC is 32 bytes, not 31$"):
        encode_frame(1, b"", 0, b"m" * 31)


# -- compression ---------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_compression_round_trips(body: bytes) -> None:
    assert decompress(compress(body), len(body)) == body
    assert decompress(compress(body), len(body) + 100) == body


def test_decompression_stops_one_byte_past_the_limit() -> None:
    packed = compress(b"a" * 1000)
    assert decompress(packed, 1000) == b"a" * 1000
    with pytest.raises(RemoteProtocolError, match=r"^compressed body inflates past the limit of 999 bytes$"):
        decompress(packed, 999)


def test_a_decompression_bomb_costs_no_more_than_the_limit() -> None:
    # 256 MiB of zeros in about 256 KiB, built in pieces so the test itself stays small.
    packer = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    bomb = b"".join(packer.compress(chunk) for _ in range(256)) + packer.flush()
    assert len(bomb) < 1024 * 1024
    limit = 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError, match=f"^compressed body inflates past the limit of {limit} bytes$"):
            decompress(bomb, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not zlib at all", "compressed body is not a valid zlib stream: "),
        (compress(b"hello world" * 10)[:-5], "compressed body is an incomplete zlib stream"),
        (b"", "compressed body is an incomplete zlib stream"),
        (compress(b"hello") + b"trailing", "compressed body has data after the end of its zlib stream"),
        (compress(b"hello") + compress(b"again"), "compressed body has data after the end of its zlib stream"),
    ],
)
def test_malformed_compressed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"^{re.escape(message)}"):
        decompress(body, 10_000)


def test_incompressible_data_is_still_a_valid_stream() -> None:
    body = random.Random(0).randbytes(2048)
    assert decompress(compress(body), 2048) == body
