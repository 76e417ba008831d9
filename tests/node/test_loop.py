"""The member's loop: hosted on a running loop or on a thread of its own, and how request
code waits for the member's futures (``gather_futures``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from replisession.node.loop import LightFuture, LoopThread, gather_futures, wait_all

# What the member's sends return (LightFuture), and the standard future it stands in for.
KINDS = [pytest.param(LightFuture, id="light"), pytest.param(concurrent.futures.Future, id="standard")]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_gather_futures_gives_results_exceptions_and_timeouts_in_order(kind: Any) -> None:
    done = kind()
    done.set_result("early")
    from_thread, from_loop, failed, cancelled, late = (kind() for _ in range(5))
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
@pytest.mark.parametrize("kind", KINDS)
async def test_a_future_resolved_on_the_loop_wakes_the_waiter_without_an_extra_turn(kind: Any) -> None:
    """A hosted member resolves sends on the server's loop: the request resumes on the next
    turn, as if it awaited an asyncio future (one turn of latency per sync write saved)."""
    future = kind()
    waiting = asyncio.ensure_future(gather_futures([future], 60.0))
    await asyncio.sleep(0)  # the waiter is now suspended on the future
    assert not waiting.done()
    future.set_result("applied")
    await asyncio.sleep(0)  # one turn: the waiter's wake-up was queued before ours
    assert waiting.done()
    assert waiting.result() == ["applied"]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_gather_futures_returns_as_soon_as_all_are_done(kind: Any) -> None:
    future = kind()
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


def test_a_light_future_gives_its_result_exception_or_cancellation_as_the_standard_one() -> None:
    ok: LightFuture[str] = LightFuture()
    assert not ok.done()
    assert not ok.cancelled()
    assert ok.set_running_or_notify_cancel()
    assert ok.running()
    assert not ok.done()
    assert not ok.cancel()  # running: no longer cancellable, as the standard one
    with pytest.raises(RuntimeError):
        ok.set_running_or_notify_cancel()  # started once only
    ok.set_result("applied")
    assert not ok.running()
    assert ok.done()
    assert ok.result() == "applied"
    assert ok.exception() is None
    with pytest.raises(concurrent.futures.InvalidStateError):
        ok.set_result("twice")  # the first outcome stands
    assert ok.result() == "applied"

    failed: LightFuture[str] = LightFuture()
    failed.set_exception(ValueError("refused"))
    assert isinstance(failed.exception(), ValueError)
    with pytest.raises(ValueError, match="refused"):
        failed.result()

    cancelled: LightFuture[str] = LightFuture()
    assert cancelled.cancel()
    assert cancelled.cancel()  # cancelling again is harmless
    assert cancelled.cancelled()
    assert cancelled.done()
    assert not cancelled.set_running_or_notify_cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result("late")  # the member's late ACK after a stop cancelled it
    assert not ok.cancel()  # a finished one is not cancelled


def test_callbacks_run_once_at_resolution_or_at_once_when_added_late(caplog: pytest.LogCaptureFixture) -> None:
    future: LightFuture[int] = LightFuture()
    seen: list[tuple[str, int]] = []

    def broken(_: LightFuture[int]) -> None:
        raise RuntimeError("a broken callback")

    future.add_done_callback(lambda f: seen.append(("first", f.result())))
    future.add_done_callback(broken)
    future.add_done_callback(lambda f: seen.append(("second", f.result())))
    assert seen == []
    future.set_result(7)
    assert seen == [("first", 7), ("second", 7)]  # a failing callback does not stop the others
    assert "a broken callback" in caplog.text
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen[-1] == ("late", 7)


def test_a_thread_blocks_on_a_light_future_until_another_resolves_it_or_its_timeout() -> None:
    future: LightFuture[str] = LightFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(0.01)
    results: list[str] = []
    waiters = [threading.Thread(target=lambda: results.append(future.result(30))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    threading.Timer(0.02, future.set_result, args=("applied",)).start()
    for waiter in waiters:
        waiter.join(30)
    assert results == ["applied"] * 4


def test_wait_all_returns_when_every_future_is_done_or_its_timeout_passed() -> None:
    futures: list[LightFuture[int]] = [LightFuture() for _ in range(3)]
    futures[0].set_exception(ValueError("no"))  # a failure is done too
    threading.Timer(0.02, futures[1].set_result, args=(1,)).start()
    threading.Timer(0.03, futures[2].cancel).start()
    wait_all(futures, 30)
    assert all(future.done() for future in futures)
    late: LightFuture[int] = LightFuture()
    wait_all([late], 0.01)  # gives up at the timeout, raising nothing
    assert not late.done()
