"""Per-member counters and the replication lag histogram.

Counting must cost next to nothing where it happens (the request path, the
member's event loop, every frame): each counter is a plain ``int`` attribute
incremented in place, and the few methods called from the hot path do a couple of
comparisons and increments. Nothing here takes a lock. What is derived (sessions by
state, member lists, quantiles) is computed when someone asks
(:mod:`.report`), not on every write.

Threads. Most counters move on the member's event-loop thread only (sends and
their outcomes, what arrives, bytes, the lag histogram, state transfers); the
store counts created and ended sessions under its own lock. Failovers are counted
on request threads: two ``+=`` on one attribute from two threads at the same
moment can, rarely, lose one increment (the GIL may switch between the read and
the write). These are monitoring figures, not accounts; a lock on every request
would cost more than the precision is worth.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from typing import Any

from ..core.channel import DeliveryStatus, SendOutcome
from ..core.messages import MemberInfo

__all__ = ["COUNTERS", "LAG_BUCKETS", "LagHistogram", "Metrics"]

failover_log = logging.getLogger("replisession.failover")

#: Upper bounds (seconds) of the lag histogram's buckets, Prometheus ``le`` style; +Inf is implied.
#: From a tenth of a millisecond (a delta applied on loopback) to the default send timeout.
LAG_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: Every counter of :class:`Metrics`, with what it counts (the Prometheus HELP text).
COUNTERS: dict[str, str] = {
    "deltas_sent": "Session changes and ends this member sent to other members (one per change, whatever the targets).",
    "deltas_received": "Session deltas received from other members.",
    "deltas_applied": "Received deltas applied (a stale or repeated one is applied as a no-op, by design).",
    "deltas_rejected": "Received deltas refused: invalid or undecodable; the sender's send fails for this member.",
    "send_failures": "Acknowledged sends that failed for one member: a negative acknowledgement or the member gone.",
    "ack_timeouts": "Acknowledged sends that one member did not acknowledge within the send timeout.",
    "state_transfers_sent": "Complete state transfers this member streamed to a joining member.",
    "state_transfers_stopped": "State transfers to a joining member that stopped before the end.",
    "state_transfers_received": "Complete state transfers this member received from another member.",
    "sessions_transferred": "Sessions received in state-transfer and fetch batches.",
    "failovers": "Requests whose cookie named another member's route, re-routed to this member (cookie re-issued).",
    "members_joined": "Members that joined (completed the authenticated handshake).",
    "members_suspected": "Members that went silent and were being verified.",
    "members_left": "Members removed: left gracefully, crashed, restarted or unresponsive.",
}

#: Waited sends whose start is remembered at most; past it the oldest are forgotten
#: (every waited send completes or times out, so this only bounds a pathological case).
_MAX_WAITING = 65536


class LagHistogram:
    """A fixed-bucket histogram (Prometheus semantics: a value falls in the first bucket whose bound is >= it)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LAG_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)) or not self.bounds:
            raise ValueError("histogram bounds must be distinct and increasing")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, observations <= le)`` per bucket, ending with ``(inf, count)``."""
        out = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile, interpolated within its bucket (as Prometheus'
        ``histogram_quantile``); None without observations. Beyond the last finite bound
        the estimate is that bound: the histogram knows no more."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, not {q!r}")
        buckets = self.cumulative()
        total = buckets[-1][1]
        if total == 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0
        for bound, count in buckets:
            if count >= rank and count > lower_count:
                if math.isinf(bound):
                    return lower_bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
            lower_bound, lower_count = bound, count
        return lower_bound  # pragma: no cover - the +Inf bucket holds every observation


class Metrics:
    """One member's counters (see :data:`COUNTERS`) and its replication lag histogram.

    The node owns one; the cluster member, the replicator and the web front move
    it. Lag is measured for ``delta`` sends in ``ack``/``sync`` mode, from the
    moment the member thread wrote the delta to the moment the last target
    acknowledged it (``sync``: applied it), so it is what a request waits for
    beyond the hand-off; ``async`` sends are never acknowledged, so in that mode
    the histogram stays empty.
    """

    __slots__ = (*COUNTERS, "_waiting", "lag")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.lag = LagHistogram()
        self._waiting: dict[int, float] = {}  # request id of a waited delta send -> when it was written

    # Declared for type checkers; set in __init__ from COUNTERS.
    deltas_sent: int
    deltas_received: int
    deltas_applied: int
    deltas_rejected: int
    send_failures: int
    ack_timeouts: int
    state_transfers_sent: int
    state_transfers_stopped: int
    state_transfers_received: int
    sessions_transferred: int
    failovers: int
    members_joined: int
    members_suspected: int
    members_left: int

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    # -- from the cluster member's thread ------------------------------------------------------

    def sent(self, kind: str, targets: Sequence[MemberInfo], request_id: int, now: float, waited: bool) -> None:
        """A message was numbered for ``targets``; ``waited``: its acknowledgements are awaited."""
        if kind != "delta" or not targets:
            return
        self.deltas_sent += 1
        if waited:
            waiting = self._waiting
            if len(waiting) >= _MAX_WAITING:
                del waiting[next(iter(waiting))]
            waiting[request_id] = now

    def completed(self, outcome: SendOutcome, now: float) -> None:
        """A waited send ended: count per-member failures; time a delta acknowledged by all."""
        started = self._waiting.pop(outcome.request_id, None)
        failed = False
        for _, status, _ in outcome.results.values():
            if status is DeliveryStatus.TIMEOUT:
                self.ack_timeouts += 1
                failed = True
            elif status is not DeliveryStatus.OK:
                self.send_failures += 1
                failed = True
        if started is not None and not failed and outcome.results:
            self.lag.observe(max(0.0, now - started))

    def received(self, kind: str, payload: Any, error: str | None) -> None:
        """A DATA message of ``kind`` arrived and its handler ran (``error``: it failed)."""
        if kind == "delta":
            self.deltas_received += 1
            if error is None:
                self.deltas_applied += 1
            else:
                self.deltas_rejected += 1
        elif kind == "sessions" and error is None:
            # The handler validated the payload before applying it, so its shape is known.
            self.sessions_transferred += len(payload["sessions"])
            if payload["last"]:
                self.state_transfers_received += 1

    # -- from request threads -----------------------------------------------------------------

    def failover(self, cookie_route: str | None, route: str | None) -> None:
        """A request's cookie named another member's route: the cookie is re-issued with ours.

        A cookie without a route (issued by a member that had none) is not a failover."""
        if cookie_route is None:
            return
        self.failovers += 1
        failover_log.info(
            "failover: a session routed to %r is now served by %r; its cookie is re-issued", cookie_route, route
        )
