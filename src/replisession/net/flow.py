"""Write-side flow control for one connection (uvicorn's ``FlowControl``, writing only).

asyncio calls ``pause_writing`` when a transport's write buffer rises above its high
water mark and ``resume_writing`` when it has drained below the low one. Senders that
must not queue without bound await :meth:`drain`. Reading needs no such class: every
frame is handed to the node synchronously as it arrives.
"""

from __future__ import annotations

import asyncio

__all__ = ["WriteFlowControl"]


class WriteFlowControl:
    __slots__ = ("_writable",)

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def paused(self) -> bool:
        return not self._writable.is_set()

    async def drain(self) -> None:
        """Return once the write buffer is below its high water mark (or the connection is gone)."""
        await self._writable.wait()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def release(self) -> None:
        """The connection is gone: nobody may wait on it any longer."""
        self._writable.set()
