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
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["LightFuture", "LoopThread", "Outcome", "gather_futures", "wait_all"]

log = logging.getLogger("replisession.cluster")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Outcome(Protocol[T_co]):
    """What callers read of a future: a ``concurrent.futures.Future`` or a :class:`LightFuture`."""

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self, timeout: float | None = None) -> T_co: ...
    def exception(self, timeout: float | None = None) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


_PENDING, _RUNNING, _CANCELLED, _FINISHED = 0, 1, 2, 3
_STATES = ("pending", "running", "cancelled", "finished")


class LightFuture(Generic[T]):
    """``concurrent.futures.Future``'s API for a send's outcome, at a fraction of its cost.

    The standard one guards its state with a ``threading.Condition``, whose every use
    runs Python-level ``__enter__``/``__exit__``/``notify_all`` code: a replicated sync
    write made, took and notified it about fifteen times. This one takes a C lock, makes
    a ``threading.Event`` only when a thread blocks on it, and runs callbacks at once in
    the thread that resolves it (as the standard one does). Its states are the standard
    one's: pending, running (:meth:`set_running_or_notify_cancel`; no longer cancellable),
    cancelled, finished. Blocking on it on the thread that will resolve it deadlocks, as
    with the standard one; await it with :func:`gather_futures` instead. It is not a
    ``concurrent.futures.Future``: ``asyncio.wrap_future`` and ``concurrent.futures.wait``
    do not take it (:func:`gather_futures` and :func:`wait_all` do).
    """

    __slots__ = ("_callbacks", "_event", "_exception", "_lock", "_result", "_state")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[LightFuture[T]], object]] = []
        self._lock = threading.Lock()  # a C lock
        self._event: threading.Event | None = None  # made by the first thread that blocks

    def __repr__(self) -> str:
        return f"<LightFuture {_STATES[self._state]}>"

    def done(self) -> bool:
        return self._state >= _CANCELLED

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return self._state == _RUNNING

    def set_running_or_notify_cancel(self) -> bool:
        """As the standard one's: False when it was cancelled (nothing is to be done), else
        it is running from now on and can no longer be cancelled."""
        with self._lock:
            if self._state == _CANCELLED:
                return False
            if self._state != _PENDING:
                raise RuntimeError(f"{self!r} is already {_STATES[self._state]}")
            self._state = _RUNNING
            return True

    def result(self, timeout: float | None = None) -> T:
        exception = self.exception(timeout)
        if exception is None:
            return self._result  # type: ignore[return-value]  # set by set_result
        try:
            raise exception
        finally:
            del exception  # no cycle through this frame's traceback

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state < _CANCELLED:
            self._wait(timeout)
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError()
        return self._exception

    def add_done_callback(self, fn: Callable[[LightFuture[T]], object]) -> None:
        with self._lock:
            if self._state < _CANCELLED:
                self._callbacks.append(fn)
                return
        self._call(fn)

    def set_result(self, result: T) -> None:
        self._finish(_FINISHED, result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._finish(_FINISHED, None, exception)

    def cancel(self) -> bool:
        """False once running or finished, as the standard one's."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._finish(_CANCELLED, None, None, only_pending=True)
        return self._state == _CANCELLED

    def _finish(
        self, state: int, result: T | None, exception: BaseException | None, *, only_pending: bool = False
    ) -> None:
        with self._lock:
            if self._state >= _CANCELLED or (only_pending and self._state != _PENDING):
                raise concurrent.futures.InvalidStateError(f"{self!r} is already {_STATES[self._state]}")
            # The outcome before the state: done() and exception() read without the lock.
            self._result, self._exception = result, exception
            self._state = state
            callbacks, self._callbacks, event = self._callbacks, [], self._event
        if event is not None:
            event.set()
        for fn in callbacks:
            self._call(fn)

    def _wait(self, timeout: float | None) -> None:
        with self._lock:
            if self._state >= _CANCELLED:
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            raise concurrent.futures.TimeoutError()

    def _call(self, fn: Callable[[LightFuture[T]], object]) -> None:
        try:
            fn(self)
        except Exception:  # as the standard one: a failing callback is logged, the others run
            log.exception("exception calling callback for %r", self)


def wait_all(futures: Iterable[Outcome[Any]], timeout: float | None) -> None:
    """Block until every future is done or ``timeout`` seconds have passed (off the loop only)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(Exception):
            future.exception(left)


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
        self._worker: threading.Thread | None = None  # not "_thread": compiled, a C keyword
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
        return self._worker is not None and self._worker.is_alive()

    @property
    def on_loop(self) -> bool:
        """True when called on the loop's own thread (where nothing may block on the loop)."""
        return self._ident is not None and threading.get_ident() == self._ident

    def start(self) -> None:
        if self.running:
            return
        self._ready.clear()
        self._hosted = False
        self._worker = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._worker.start()
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
        assert self._worker is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)
        self._worker = None
        self._loop = None
        self._ident = None


async def gather_futures(futures: Sequence[Outcome[Any]], within: float) -> list[Any]:
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

        def done_callback(_: Outcome[Any]) -> None:
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
