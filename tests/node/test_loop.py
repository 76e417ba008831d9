"""The member's loop: hosted on a running loop or on a thread of its own, and how request
code waits for the member's futures (``gather_futures``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from replisession.node.loop import LoopThread, gather_futures


@pytest.mark.asyncio
async def test_gather_futures_gives_results_exceptions_and_timeouts_in_order() -> None:
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    done.set_result("early")
    from_thread: concurrent.futures.Future[Any] = concurrent.futures.Future()
    from_loop: concurrent.futures.Future[Any] = concurrent.futures.Future()
    failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
    cancelled: concurrent.futures.Future[Any] = concurrent.futures.Future()
    late: concurrent.futures.Future[Any] = concurrent.futures.Future()
    cancelled.cancel()
    failed.set_exception(ValueError("refused"))
    asyncio.get_running_loop().call_soon(from_loop.set_result, "loop")
    threading.Thread(target=from_thread.set_result, args=("thread",)).start()
    results = await gather_futures([done, from_thread, from_loop, failed, cancelled, late], 0.2)
    assert results[:3] == ["early", "thread", "loop"]
    assert isinstance(results[3], ValueError)
    assert isinstance(results[4], concurrent.futures.CancelledError)
    assert isinstance(results[5], TimeoutError)


@pytest.mark.asyncio
async def test_a_future_resolved_on_the_loop_wakes_the_waiter_without_an_extra_turn() -> None:
    """A hosted member resolves sends on the server's loop: the request resumes on the next
    turn, as if it awaited an asyncio future (one turn of latency per sync write saved)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    waiting = asyncio.ensure_future(gather_futures([future], 60.0))
    await asyncio.sleep(0)  # the waiter is now suspended on the future
    assert not waiting.done()
    future.set_result("applied")
    await asyncio.sleep(0)  # one turn: the waiter's wake-up was queued before ours
    assert waiting.done()
    assert waiting.result() == ["applied"]


@pytest.mark.asyncio
async def test_gather_futures_returns_as_soon_as_all_are_done() -> None:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    asyncio.get_running_loop().call_later(0.01, future.set_result, 1)
    assert await asyncio.wait_for(gather_futures([future], 60.0), 30.0) == [1]
    assert await gather_futures([], 60.0) == []


@pytest.mark.asyncio
async def test_a_hosted_loop_calls_at_once_on_its_thread_and_via_the_loop_from_others() -> None:
    loop_thread = LoopThread()
    loop_thread.adopt()
    assert loop_thread.hosted
    assert loop_thread.running
    assert loop_thread.on_loop
    calls: list[str] = []
    loop_thread.call(calls.append, "direct")
    assert calls == ["direct"]  # no turn of the loop in between
    other = threading.Thread(target=loop_thread.call, args=(calls.append, "handed over"))
    other.start()
    other.join()
    assert calls == ["direct"]
    end = asyncio.get_running_loop().time() + 10.0
    while len(calls) < 2:
        assert asyncio.get_running_loop().time() < end, "the handed-over call never ran"
        await asyncio.sleep(0.01)  # polling inside a deadline
    assert calls == ["direct", "handed over"]
    loop_thread.stop()  # the server's loop is let go, not stopped
    assert not loop_thread.hosted
    assert not loop_thread.running
    assert asyncio.get_running_loop().is_running()


def test_a_loop_of_its_own_runs_on_its_thread() -> None:
    loop_thread = LoopThread()
    loop_thread.start()
    try:
        assert loop_thread.running
        assert not loop_thread.hosted
        assert not loop_thread.on_loop

        async def where() -> bool:
            return loop_thread.on_loop

        assert loop_thread.submit(where()).result(10)
    finally:
        loop_thread.stop()
    assert not loop_thread.running
