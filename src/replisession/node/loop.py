"""The event loop the cluster member runs on: the server's own, or one on a thread of its own.

Under an ASGI server with a lifespan (uvicorn, hypercorn, gunicorn's uvicorn worker) the
member is *hosted*: it runs on the server's loop, so a request's replication send is a
plain call with no thread hand-off, and acknowledgements resolve the request's wait on
the same loop (measured: the hand-off and the GIL traffic it causes were about half of
the sender's replication cost).

Everything else gets a loop on a daemon thread: a WSGI server has no loop at all, and an
ASGI app driven without a lifespan may see loops that live for one request (Starlette's
TestClient does this). Other threads only hand work over (:meth:`call`, :meth:`submit`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "gather_futures"]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency on CPython outside Windows): its
    transports and callbacks run in C, which took the cost of a replicated write down by
    half in benchmarks/replication.py; asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - PyPy or Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    def __init__(self, name: str = "replisession-member") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ident: int | None = None  # the thread the loop runs on
        self._hosted = False
        self._ready = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the member loop is not running"
        return self._loop

    @property
    def hosted(self) -> bool:
        """True when running on the server's loop rather than a thread of our own."""
        return self._hosted

    @property
    def running(self) -> bool:
        if self._hosted:
            return self._loop is not None and not self._loop.is_closed()
        return self._thread is not None and self._thread.is_alive()

    @property
    def on_loop(self) -> bool:
        """True when called on the loop's own thread (where nothing may block on the loop)."""
        return self._ident is not None and threading.get_ident() == self._ident

    def start(self) -> None:
        if self.running:
            return
        self._ready.clear()
        self._hosted = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def adopt(self) -> None:
        """Run on the loop of the calling coroutine (the server's) from now on."""
        assert not self.running, "the member loop is already running"
        self._loop = asyncio.get_running_loop()
        self._ident = threading.get_ident()
        self._hosted = True

    def _run(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        self._ident = threading.get_ident()
        asyncio.set_event_loop(loop)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` on the loop: at once when already on it, else at its next turn."""
        if self.on_loop:
            function(*args)
        else:
            self.loop.call_soon_threadsafe(function, *args)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the loop; safe to call from any thread (never wait on the
        result on the loop's own thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop our own thread's loop; a hosted loop belongs to the server and is only let go."""
        if self._hosted:
            self._hosted = False
            self._loop = None
            self._ident = None
            return
        if not self.running:
            return
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._thread = None
        self._loop = None
        self._ident = None


async def gather_futures(futures: list[concurrent.futures.Future[Any]], within: float) -> list[Any]:
    """Each future's result, or its exception (``TimeoutError`` if not done ``within`` seconds).

    Cheaper than ``asyncio.wrap_future`` + ``gather`` + ``wait_for`` (one asyncio future in
    all, no tasks): a future resolved on this loop's own thread (a hosted member) wakes the
    waiter at once, with no extra turn of the loop and no write to the loop's self-pipe.
    """
    pending = [future for future in futures if not future.done()]
    if pending:
        loop = asyncio.get_running_loop()
        ident = threading.get_ident()
        waiter: asyncio.Future[None] = loop.create_future()
        left = len(pending)

        def one_done() -> None:
            nonlocal left
            left -= 1
            if left == 0 and not waiter.done():
                waiter.set_result(None)

        def done_callback(_: concurrent.futures.Future[Any]) -> None:
            if threading.get_ident() == ident:
                one_done()  # a future calls back outside its lock: the waiter may be resolved here
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed while we waited
                    loop.call_soon_threadsafe(one_done)

        for future in pending:
            future.add_done_callback(done_callback)

        def expire() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(within, expire)
        try:
            await waiter
        finally:
            timer.cancel()
    results: list[Any] = []
    for future in futures:  # never result() on a failed one: raising grows its traceback
        if not future.done():
            results.append(TimeoutError(f"not done within {within}s"))
        elif future.cancelled():
            results.append(concurrent.futures.CancelledError())
        elif (exc := future.exception()) is not None:
            results.append(exc)
        else:
            results.append(future.result())
    return results
