"""Frames: a fixed header, a length-prefixed body, a MAC; and bounded compression.

A frame on the wire::

    magic b"RS" | version u8 | frame type u8 | flags u8 | body length u32 BE | body | MAC (32 bytes)

Tomcat's Tribes frames (``FLT2002 | int32 length | payload | TLF2003``) have no size
limit and its receive buffer doubles as needed; its gzip interceptor inflates without
a bound (weak point 7). Here both are bounded: :class:`FrameDecoder` refuses a frame
from its 9 header bytes, before buffering any of the body, if the declared length is
above the limit, and :func:`decompress` never produces more than its limit.

This module only moves bytes; what the MAC is computed over lives in ``auth.py`` and
which frame may come when lives in ``connection.py``.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ..errors import ConfigError, LocalProtocolError, RemoteProtocolError
from .messages import PROTOCOL_VERSION

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FLAG_COMPRESSED",
    "HEADER_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "FrameDecoder",
    "RawFrame",
    "compress",
    "decompress",
    "encode_frame",
    "frame_header",
]

MAGIC = b"RS"
_HEADER = struct.Struct(">2sBBBI")
HEADER_SIZE = _HEADER.size  # 9 bytes
MAC_SIZE = 32  # HMAC-SHA256
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
FLAG_COMPRESSED = 0x01  # the body is a zlib stream
_KNOWN_FLAGS = FLAG_COMPRESSED
_MAX_LENGTH = 2**32 - 1  # what the u32 length field can say


class RawFrame(NamedTuple):
    """One frame as received: not yet authenticated, body possibly compressed.

    ``header`` is the 9 header bytes exactly as received, because the MAC covers them.
    A named tuple: one is made per frame received, and a tuple is cheaper to make than a
    frozen dataclass (which sets each field through ``object.__setattr__``).
    """

    header: bytes
    frame_type: int
    flags: int
    body: bytes
    mac: bytes


def frame_header(frame_type: object, flags: object, length: int) -> bytes:
    """The 9 header bytes of a frame of ``frame_type`` with a body of ``length`` bytes."""
    # Checked inline: this runs for every frame sent. FrameType is an int; True is not.
    # Typed ``object`` and bool first: compiled, an ``int`` would have turned True into 1.
    if type(frame_type) is bool or not isinstance(frame_type, int) or not 0 <= frame_type <= 255:
        raise LocalProtocolError(f"frame type must be an integer in [0, 255], not {frame_type!r}")
    if type(flags) is bool or not isinstance(flags, int) or flags & ~_KNOWN_FLAGS:
        raise LocalProtocolError(f"unknown frame flags {flags!r}")
    if not 0 <= length <= _MAX_LENGTH:
        raise LocalProtocolError(f"a frame body of {length} bytes does not fit the length field")
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, frame_type, flags, length)


def encode_frame(frame_type: int, body: bytes, flags: int, mac: bytes) -> bytes:
    """A whole frame: header, ``body`` (already compressed if ``flags`` says so), ``mac``."""
    if len(mac) != MAC_SIZE:
        raise LocalProtocolError(f"a frame MAC is {MAC_SIZE} bytes, not {len(mac)}")
    return frame_header(frame_type, flags, len(body)) + body + mac


class FrameDecoder:
    """Splits a byte stream into :class:`RawFrame` objects, however it is chunked.

    Denial-of-service bound: the decoder holds at most one incomplete frame, that is
    ``HEADER_SIZE + max_frame_size + MAC_SIZE`` bytes, and refuses an oversized frame
    as soon as its header is complete. Complete frames found in one chunk are returned
    together; the chunk itself is sliced, never appended to the buffer whole. After an
    error the stream position is lost, so every later :meth:`feed` raises too.
    """

    __slots__ = ("_buffer", "_failed", "_length", "_max_frame_size")

    def __init__(self, max_frame_size: object = DEFAULT_MAX_FRAME_SIZE) -> None:
        if type(max_frame_size) is bool or not isinstance(max_frame_size, int) or not 0 < max_frame_size <= _MAX_LENGTH:
            raise ConfigError(f"max_frame_size must be an integer in [1, {_MAX_LENGTH}], not {max_frame_size!r}")
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._length: int | None = None  # body length of the frame being read, once its header is in
        self._failed = False

    @property
    def max_frame_size(self) -> int:
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes held for the frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[RawFrame]:
        """Add received bytes; return the frames they complete, in order."""
        if self._failed:
            raise RemoteProtocolError("the frame stream failed earlier and cannot be resumed")
        frames: list[RawFrame] = []
        try:
            if not self._buffer:  # the usual case: whole frames, sliced straight out of the chunk
                data = self._whole_frames(data, frames)
            view = memoryview(data)
            while view:
                wanted = HEADER_SIZE if self._length is None else HEADER_SIZE + self._length + MAC_SIZE
                missing = wanted - len(self._buffer)
                self._buffer += view[:missing]
                view = view[missing:]
                if len(self._buffer) < wanted:
                    break
                if self._length is None:
                    self._length = self._check_header(bytes(self._buffer))
                else:
                    frames.append(self._take_frame())
        except RemoteProtocolError:
            self._failed = True
            raise
        return frames

    def _whole_frames(self, data: bytes, frames: list[RawFrame]) -> bytes:
        """Take the complete frames at the start of ``data``; return the rest (a partial frame)."""
        offset, end = 0, len(data)
        while end - offset >= HEADER_SIZE:
            header = data[offset : offset + HEADER_SIZE]
            length = self._check_header(header)
            stop = offset + HEADER_SIZE + length + MAC_SIZE
            if stop > end:
                break
            frames.append(
                RawFrame(
                    header,
                    header[3],
                    header[4],
                    data[offset + HEADER_SIZE : stop - MAC_SIZE],
                    data[stop - MAC_SIZE : stop],
                )
            )
            offset = stop
        return data[offset:] if offset else data

    def _check_header(self, header: bytes) -> int:
        magic, version, _frame_type, flags, length = _HEADER.unpack(header)
        assert isinstance(length, int)
        if magic != MAGIC:
            raise RemoteProtocolError(f"bad frame magic {magic!r}: the peer does not speak the replisession protocol")
        if version != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported frame version {version} (we speak {PROTOCOL_VERSION})")
        if flags & ~_KNOWN_FLAGS:
            raise RemoteProtocolError(f"unknown frame flags {flags:#04x}")
        if length > self._max_frame_size:
            raise RemoteProtocolError(
                f"frame body of {length} bytes exceeds the maximum frame size of {self._max_frame_size} bytes"
            )
        return length

    def _take_frame(self) -> RawFrame:
        frame = bytes(self._buffer)
        self._buffer.clear()
        self._length = None
        _magic, _version, frame_type, flags, _length = _HEADER.unpack_from(frame)
        return RawFrame(
            header=frame[:HEADER_SIZE],
            frame_type=frame_type,
            flags=flags,
            body=frame[HEADER_SIZE:-MAC_SIZE],
            mac=frame[-MAC_SIZE:],
        )


def compress(body: bytes) -> bytes:
    """``body`` as a zlib stream (for a frame with :data:`FLAG_COMPRESSED`)."""
    return zlib.compress(body)


def decompress(body: bytes, limit: int) -> bytes:
    """Inflate a zlib stream of exactly one ``body``, refusing output above ``limit`` bytes.

    Denial-of-service bound: zlib is asked for at most ``limit + 1`` bytes, so a
    decompression bomb (a few kilobytes that inflate to gigabytes) costs at most
    ``limit + 1`` bytes of memory before it is refused.
    """
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RemoteProtocolError(f"compressed body is not a valid zlib stream: {exc}") from exc
    if len(inflated) > limit:
        raise RemoteProtocolError(f"compressed body inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise RemoteProtocolError("compressed body is an incomplete zlib stream")
    if inflater.unused_data:
        raise RemoteProtocolError("compressed body has data after the end of its zlib stream")
    return inflated
