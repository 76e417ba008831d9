"""Write-side flow control, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from replisession.net.flow import WriteFlowControl


@pytest.mark.asyncio
async def test_drain_waits_between_pause_and_resume() -> None:
    flow = WriteFlowControl()
    await asyncio.wait_for(flow.drain(), 1.0)
    flow.pause_writing()
    assert flow.paused
    waiting = asyncio.ensure_future(flow.drain())
    await asyncio.sleep(0)
    assert not waiting.done()
    flow.resume_writing()
    await asyncio.wait_for(waiting, 1.0)
    assert not flow.paused


@pytest.mark.asyncio
async def test_release_frees_the_waiters() -> None:
    flow = WriteFlowControl()
    flow.pause_writing()
    waiting = asyncio.ensure_future(flow.drain())
    await asyncio.sleep(0)
    flow.release()
    await asyncio.wait_for(waiting, 1.0)
