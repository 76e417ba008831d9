"""A cluster member: the membership and channel state machines wired to the network.

Everything here runs on the member's event loop (:class:`LoopThread`): the ASGI server's
own loop when started from a lifespan (:meth:`ClusterMember.start_hosted`), otherwise a
loop on a thread of its own. "The member thread" below is whichever thread runs that
loop. Other threads call :meth:`ClusterMember.send` (thread-safe; returns a
:class:`~.loop.LightFuture`, with ``concurrent.futures.Future``'s API) and register
handlers; handlers and listeners are called on the member thread. This module holds no
protocol logic: it moves effects from ``core`` to ``net`` and events from ``net`` to ``core``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..cluster_config import ClusterConfig
from ..core.channel import Channel, SendOutcome
from ..core.membership import (
    Connect,
    Disconnect,
    Effect,
    MemberJoined,
    MemberLeft,
    Membership,
    MemberSuspected,
    Probe,
    SendTo,
)
from ..core.messages import MAX_ACKED, Ack, Data, Leave, MemberInfo, Message, SendMode, encode_message
from ..errors import TransportError
from ..net.multicast import MulticastDiscovery
from ..net.probe import probe
from ..net.tcp import TcpTransport
from ..wire.auth import derive_cluster_key
from .listener import ClusterListener
from .loop import LightFuture, LoopThread, gather_futures
from .metrics import Metrics

__all__ = ["ClusterMember", "Handler"]

#: Unacknowledged messages a stream may have out at once.
STREAM_WINDOW = 2

log = logging.getLogger("replisession.cluster")

#: ``handler(sender, payload)`` for DATA of one kind; raising makes a sync send FAILED for that
#: member. It may return ``(kind, payload)`` replies: they are written to the sender before
#: the acknowledgement, so a sync sender has them once its send completes.
Handler = Callable[[MemberInfo, Any], "Iterable[tuple[str, Any]] | None"]


class ClusterMember:
    """This process as a member of the cluster."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        listeners: Iterable[ClusterListener] = (),
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self.incarnation = secrets.token_hex(16)
        self.listeners = list(listeners)
        self.handlers: dict[str, Handler] = {}
        self.channel = Channel()
        self._loop_thread = LoopThread()
        self._transport: TcpTransport | None = None
        self._multicast: MulticastDiscovery | None = None
        self._membership: Membership | None = None
        self._local: MemberInfo | None = None
        self._waiters: dict[int, LightFuture[SendOutcome]] = {}
        self._acks: dict[str, list[int]] = {}  # per member: DATA of the current read to acknowledge together
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False
        #: Called on the member thread with our identity once bound, before any peer is heard.
        self.on_bound: Callable[[MemberInfo], None] | None = None

    # -- lifecycle (any thread) ----------------------------------------------------------------

    @property
    def local(self) -> MemberInfo:
        assert self._local is not None, "the member has not started"
        return self._local

    @property
    def running(self) -> bool:
        return self._loop_thread.running and not self._stopped

    def start(self, timeout: float = 10.0) -> MemberInfo:
        """Bind the peer channel and start taking part; returns this member's identity.

        Every start is a new incarnation: peers remember a stopped one as gone for good.
        """
        self._loop_thread.start()
        try:
            return self._loop_thread.submit(self._start()).result(timeout)
        except BaseException:
            self._loop_thread.stop()
            raise

    async def start_hosted(self) -> MemberInfo:
        """Start on the running loop (the ASGI server's, from its lifespan startup) instead of a
        thread of our own: the request path then sends with no thread hand-off."""
        self._loop_thread.adopt()
        try:
            return await self._start()
        except BaseException:
            self._loop_thread.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Leave gracefully: announce it to every member, then close the channel."""
        if not self._loop_thread.running or self._stopped:
            return
        self._stopped = True
        if self._loop_thread.on_loop:  # hosted, called by the server's own thread: cannot wait here
            task = self._loop_thread.loop.create_task(self._stop())
            task.add_done_callback(lambda _: self._loop_thread.stop())
            return
        try:
            self._loop_thread.submit(self._stop()).result(timeout)
        except (concurrent.futures.TimeoutError, TransportError, OSError):
            log.warning("the cluster member did not stop cleanly within %ss", timeout)
        finally:
            self._loop_thread.stop()

    async def stop_hosted(self) -> None:
        """Leave gracefully from a coroutine on the member's loop (the lifespan's shutdown)."""
        if not self._loop_thread.running or self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.wait_for(self._stop(), self.config.send_timeout + 1.0)
        except (TimeoutError, TransportError, OSError):
            log.warning("the cluster member did not stop cleanly")
        finally:
            self._loop_thread.stop()

    @property
    def hosted(self) -> bool:
        """True when the member runs on the server's event loop."""
        return self._loop_thread.hosted

    def members(self) -> list[MemberInfo]:
        """The other members, as this member sees them (thread-safe snapshot)."""
        membership = self._membership
        return membership.members() if membership is not None else []

    def on(self, kind: str, handler: Handler) -> None:
        """Handle DATA of ``kind`` (called on the member thread)."""
        self.handlers[kind] = handler

    def send(
        self,
        kind: str,
        payload: Any,
        mode: SendMode = SendMode.ASYNC,
        targets: Iterable[MemberInfo] | None = None,
        ack_timeout: float | None = None,
    ) -> LightFuture[SendOutcome]:
        """Send DATA to ``targets`` (default: every member); thread-safe.

        The future resolves when the send is done in ``mode``: queued (async, after
        any backpressure), received (ack) or applied (sync) by every target; its
        :class:`SendOutcome` names each member that timed out, failed or left. It is a
        :class:`~.loop.LightFuture`: ``concurrent.futures.Future``'s methods for less CPU,
        but not one (await it with ``gather_futures``, not ``asyncio.wrap_future``).
        """
        chosen = list(targets) if targets is not None else None
        future: LightFuture[SendOutcome] = LightFuture()
        # A plain call rather than a coroutine: no Task and no chained asyncio future per
        # send, and on the member's loop (hosted, or a handler) no thread hand-off either.
        self._loop_thread.call(self._send_now, kind, payload, mode, chosen, ack_timeout, future)
        return future

    def post(self, kind: str, payload: Any, targets: Iterable[MemberInfo] | None = None) -> None:
        """:meth:`send` in ``async`` mode for a caller that does not look at the outcome (an
        async delta): no future is made or resolved. A message that cannot be sent (too
        large, unencodable) is logged instead of raised to anyone."""
        chosen = list(targets) if targets is not None else None
        self._loop_thread.call(self._send_now, kind, payload, SendMode.ASYNC, chosen, None, None)

    def stream(self, messages: Iterable[tuple[str, Any, MemberInfo]]) -> concurrent.futures.Future[int]:
        """Send ``(kind, payload, target)`` messages in order, each acknowledged (received),
        with at most ``STREAM_WINDOW`` unacknowledged: the next message is built while the
        receiver handles the last, and memory stays bounded (a state transfer).
        The future gives how many were acknowledged; it stops at the first failure."""
        return self._loop_thread.submit(self._stream(messages))

    # -- on the member thread -------------------------------------------------------------

    async def _stream(self, messages: Iterable[tuple[str, Any, MemberInfo]]) -> int:
        done = 0
        window: collections.deque[tuple[LightFuture[SendOutcome], MemberInfo]] = collections.deque()
        for kind, payload, target in messages:
            future: LightFuture[SendOutcome] = LightFuture()
            self._send_now(kind, payload, SendMode.ACK, [target], None, future)
            window.append((future, target))
            await asyncio.sleep(0)  # let the transport flush before the next message is built
            while len(window) >= STREAM_WINDOW or (window and window[0][0].done()):
                if not await self._acknowledged(*window.popleft(), done):
                    return done
                done += 1
        while window:
            if not await self._acknowledged(*window.popleft(), done):
                return done
            done += 1
        return done

    async def _acknowledged(self, future: LightFuture[SendOutcome], target: MemberInfo, done: int) -> bool:
        # The channel times the send out at send_timeout: the bound here is only a backstop.
        outcome: SendOutcome | BaseException
        (outcome,) = await gather_futures([future], self.config.send_timeout + 1.0)
        if isinstance(outcome, BaseException):
            raise outcome  # not sent, or the member stopped: the stream stops
        if not outcome.ok:
            log.warning("stream to %s stopped after %d messages: %s", target, done, outcome.failures())
        return outcome.ok

    async def _start(self) -> MemberInfo:
        self._stopped = False
        self.incarnation = secrets.token_hex(16)  # every start: peers remember a stopped one as gone
        config = self.config
        transport = TcpTransport(config, _TransportEvents(self), incarnation=self.incarnation)
        local = await transport.start()
        self._transport = transport
        self._local = local
        self._membership = Membership(
            local,
            seeds=config.seed_addresses(local.address),
            heartbeat_interval=config.heartbeat_interval,
            drop_time=config.drop_time,
        )
        if self.on_bound is not None:
            self.on_bound(local)  # still before any await: no peer can be handled before it
        if config.multicast is not None:
            self._multicast = MulticastDiscovery(
                config,
                local,
                cluster_key=derive_cluster_key(config.secret),
                on_member=self._discovered,
                on_leave=self._beacon_leave,
            )
            await self._multicast.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        log.info("cluster member %s started (cluster %r)", local, config.cluster_name)
        return local

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._membership is not None:
            self._apply(self._membership.leave())
        if self._multicast is not None:
            await self._multicast.stop()
        if self._transport is not None:
            transport = self._transport
            drains = [transport.wait_writable(member.id) for member in self.members()]
            try:  # let the LEAVEs go out, within bounds
                await asyncio.wait_for(asyncio.gather(*drains), self.config.send_timeout)
            except (TimeoutError, OSError):
                log.warning("some members were not told that this member leaves")
            await transport.close()
        stopped = TransportError("the cluster member stopped")
        for waiter in self._waiters.values():  # running, so not cancellable: told instead
            if not waiter.done():
                waiter.set_exception(stopped)
        for task in list(self._tasks):  # probes and paced sends (a hosted loop lives on)
            task.cancel()
        log.info("cluster member %s left the cluster", self._local)

    async def _tick_forever(self) -> None:
        interval = min(0.1, self.config.heartbeat_interval / 5)
        while True:
            now = self.clock()
            assert self._membership is not None
            try:
                self._apply(self._membership.tick(now))
                for outcome in self.channel.tick(now):
                    self._complete(outcome)
            except Exception:  # heartbeats and timeouts must outlive a bug
                log.exception("cluster member tick failed")
            await asyncio.sleep(interval)

    def _send_now(
        self,
        kind: str,
        payload: Any,
        mode: SendMode,
        targets: list[MemberInfo] | None,
        ack_timeout: float | None,
        future: LightFuture[SendOutcome] | None,
    ) -> None:
        """On the member thread: number, write and (for ack/sync) await acknowledgements.
        ``future`` is None for a :meth:`post`: nobody waits, failures are logged."""
        if future is not None and not future.set_running_or_notify_cancel():
            return
        transport, membership = self._transport, self._membership
        if transport is None or membership is None or self._stopped:
            if future is None:
                log.debug("%s not sent: the cluster member is not running", kind)
            else:
                future.set_exception(TransportError("the cluster member is not running"))
            return
        chosen = targets if targets is not None else membership.members()
        timeout = ack_timeout if ack_timeout is not None else self.config.send_timeout
        linger = self.config.async_linger if mode is SendMode.ASYNC else 0.0
        request_id: int | None = None
        try:
            now = self.clock()
            request_id, data, outcome = self.channel.send(chosen, kind, payload, mode, now, timeout)
            self.metrics.sent(kind, chosen, request_id, now, outcome is None)
            if outcome is None:
                assert future is not None, "only async sends may go without a future"
                self._waiters[request_id] = future
            blocked = []
            encoded = encode_message(data) if len(chosen) > 1 else data  # once for every target
            for member in chosen:
                if mode is SendMode.ASYNC and transport.buffered(member.id) >= self.config.send_queue_bytes:
                    blocked.append(member)  # backpressure: this one waits until its queue drains
                elif not transport.send(member.id, encoded, linger):
                    for gone in self.channel.member_gone(member):
                        self._complete(gone)
        except Exception as exc:  # an unencodable or oversized message: the caller learns it
            if request_id is not None:
                self._waiters.pop(request_id, None)
                self.channel.cancel(request_id)
            if future is None:
                log.warning("async %s not sent: %s", kind, exc)
            elif not future.done():
                future.set_exception(exc)
            return
        if outcome is not None:
            if blocked:
                self._spawn(self._send_when_writable(blocked, data, outcome, future))
            elif future is not None:
                future.set_result(outcome)

    async def _send_when_writable(
        self,
        members: list[MemberInfo],
        data: Any,
        outcome: SendOutcome,
        future: LightFuture[SendOutcome] | None,
    ) -> None:
        assert self._transport is not None
        for member in members:
            await self._transport.wait_writable(member.id)
            self._transport.send(member.id, data)
        if future is not None and not future.done():  # a stop may have ended it meanwhile
            future.set_result(outcome)

    def _complete(self, outcome: SendOutcome) -> None:
        self.metrics.completed(outcome, self.clock())
        waiter = self._waiters.pop(outcome.request_id, None)
        if waiter is not None:
            try:
                waiter.set_result(outcome)  # safe to resolve from this thread
            except concurrent.futures.InvalidStateError:
                pass  # ended by a stop
        for member, status, detail in outcome.failures():
            log.debug("send %d to %s: %s %s", outcome.request_id, member, status.value, detail)

    def _apply(self, effects: Iterable[Effect]) -> None:
        transport = self._transport
        assert transport is not None
        for effect in effects:
            if isinstance(effect, SendTo):
                transport.send(effect.member.id, effect.message)
            elif isinstance(effect, Connect):
                transport.dial(effect.address)
            elif isinstance(effect, Probe):
                self._spawn(self._probe(effect.member))
            elif isinstance(effect, Disconnect):
                self._read_done(effect.member)  # what this read acknowledged leaves before the close
                transport.disconnect(effect.member.id)
            elif isinstance(effect, MemberJoined):
                log.info("member joined: %s", effect.member)
                self._notify("member_joined", effect.member)
            elif isinstance(effect, MemberSuspected):
                log.info("member suspected: %s (silent, verifying)", effect.member)
                self._notify("member_suspected", effect.member)
            elif isinstance(effect, MemberLeft):
                log.info("member left: %s (%s)", effect.member, effect.reason)
                for outcome in self.channel.member_gone(effect.member):
                    self._complete(outcome)
                self._notify("member_left", effect.member, effect.reason)

    def _notify(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("cluster listener %r failed in %s", listener, event)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(self, member: MemberInfo) -> None:
        alive = await probe(member.address, self.config.probe_timeout)
        if self._membership is not None and not self._stopped:
            self._apply(self._membership.probe_result(member.id, alive, self.clock()))

    def _discovered(self, member: MemberInfo) -> None:
        if self._membership is not None:
            self._apply(self._membership.discovered(member, self.clock()))

    def _beacon_leave(self, member: MemberInfo) -> None:
        if self._membership is not None:
            self._apply(self._membership.received(member.id, Leave(), self.clock()))

    # -- from the transport ---------------------------------------------------------------

    def _connected(self, peer: MemberInfo) -> None:
        assert self._membership is not None
        self._apply(self._membership.connected(peer, self.clock()))

    def _message(self, peer: MemberInfo, message: Message) -> None:
        assert self._membership is not None
        assert self._transport is not None
        if isinstance(message, Data):
            delivery, ack = self.channel.received(peer, message)
            if ack is not None:
                self._acks.setdefault(peer.id, []).append(ack.msg_id)
            error = None
            handler = self.handlers.get(message.kind)
            if handler is None:
                error = f"no handler for {message.kind!r}"
            else:
                try:
                    for kind, payload in handler(peer, message.payload) or ():
                        _, reply, _ = self.channel.send((peer,), kind, payload, SendMode.ASYNC, self.clock(), 1.0)
                        self._transport.send(peer.id, reply)
                except Exception as exc:
                    log.exception("handler for %r from %s failed", message.kind, peer)
                    error = f"{type(exc).__name__}: {exc}"
            self.metrics.received(message.kind, message.payload, error)
            if delivery.needs_ack and error is None:
                self._acks.setdefault(peer.id, []).append(message.msg_id)
            elif delivery.needs_ack:
                self._transport.send(peer.id, Channel.applied(delivery, error))
        elif isinstance(message, Ack):
            for outcome in self.channel.acknowledged(peer, message):
                self._complete(outcome)
        self._apply(self._membership.received(peer.id, message, self.clock()))

    def _read_done(self, peer: MemberInfo) -> None:
        """One ACK for every DATA of a read that was received (ack) or handled without error (sync)."""
        ids = self._acks.pop(peer.id, None)
        if ids and self._transport is not None:
            for start in range(0, len(ids), MAX_ACKED):  # a read of many small frames: a few ACKs
                self._transport.send(peer.id, Ack(ids[start], more=tuple(ids[start + 1 : start + MAX_ACKED])))

    def _disconnected(self, peer: MemberInfo) -> None:
        self._acks.pop(peer.id, None)
        if self._membership is not None and not self._stopped:
            self._apply(self._membership.disconnected(peer.id, self.clock()))

    def _dial_failed(self, address: tuple[str, int], refused: bool, reason: str) -> None:
        if self._membership is not None:
            self._apply(self._membership.dial_failed(address, self.clock(), refused=refused))


class _TransportEvents:
    """The transport's listener: forwards to the member (keeps its private methods private)."""

    def __init__(self, member: ClusterMember) -> None:
        self._member = member

    def on_connected(self, peer: MemberInfo) -> None:
        self._member._connected(peer)

    def on_message(self, peer: MemberInfo, message: Message) -> None:
        self._member._message(peer, message)

    def on_read_done(self, peer: MemberInfo) -> None:
        self._member._read_done(peer)

    def on_disconnected(self, peer: MemberInfo) -> None:
        self._member._disconnected(peer)

    def on_dial_failed(self, address: tuple[str, int], refused: bool, reason: str) -> None:
        self._member._dial_failed(address, refused, reason)
