"""Send modes and acknowledgements (Tomcat's channelSendOptions), sans-IO.

``async`` returns at once; ``ack`` completes when every target has *received*
the message; ``sync`` when every target has *applied* it (its handler returned).
A timeout, a negative acknowledgement or a target that left the cluster is
reported in the outcome, per member: never only logged (Tomcat's weak point 13).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .messages import Ack, Data, MemberInfo, SendMode

__all__ = ["Channel", "Delivery", "DeliveryStatus", "SendOutcome"]


class DeliveryStatus(enum.Enum):
    OK = "ok"
    TIMEOUT = "timeout"
    FAILED = "failed"  # the target answered with a negative acknowledgement
    GONE = "gone"  # the target left the cluster or lost its connection first


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """How one send ended, member by member."""

    request_id: int
    results: Mapping[str, tuple[MemberInfo, DeliveryStatus, str]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        return all(status is DeliveryStatus.OK for _, status, _ in self.results.values())

    def failures(self) -> list[tuple[MemberInfo, DeliveryStatus, str]]:
        return [result for result in self.results.values() if result[1] is not DeliveryStatus.OK]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A DATA message for the application; ``needs_ack`` means: call :meth:`Channel.applied` after handling."""

    sender: MemberInfo
    message: Data
    needs_ack: bool


@dataclass(slots=True)
class _Pending:
    targets: dict[str, MemberInfo]
    deadline: float
    results: dict[str, tuple[MemberInfo, DeliveryStatus, str]] = field(default_factory=dict)


class Channel:
    """Numbers outgoing DATA, tracks the acknowledgements each send waits for."""

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(
        self, targets: Iterable[MemberInfo], kind: str, payload: Any, mode: SendMode, now: float, timeout: float
    ) -> tuple[int, Data, SendOutcome | None]:
        """Number a message for ``targets``.

        Returns the request id, the DATA to send to each target, and the outcome
        right away when nothing is waited for (``async``, or no targets).
        """
        if not 0 < timeout < math.inf:  # NaN too: a deadline that never passes would wait forever
            raise ValueError(f"a send timeout must be a positive number of seconds, not {timeout!r}")
        request_id = self._next_id
        self._next_id += 1
        data = Data(request_id, mode, kind, payload)
        members = {member.id: member for member in targets}
        if mode is SendMode.ASYNC or not members:
            done = {mid: (m, DeliveryStatus.OK, "") for mid, m in members.items()} if mode is SendMode.ASYNC else {}
            return request_id, data, SendOutcome(request_id, MappingProxyType(done))
        self._pending[request_id] = _Pending(members, now + timeout)
        return request_id, data, None

    def received(self, sender: MemberInfo, data: Data) -> tuple[Delivery, Ack | None]:
        """A DATA arrived: ``ack`` mode is acknowledged on receipt, ``sync`` after :meth:`applied`."""
        if data.mode is SendMode.ACK:
            return Delivery(sender, data, needs_ack=False), Ack(data.msg_id)
        return Delivery(sender, data, needs_ack=data.mode is SendMode.SYNC), None

    @staticmethod
    def applied(delivery: Delivery, error: str | None = None) -> Ack:
        """The acknowledgement of a ``sync`` DATA once its handler ran (``error`` if it failed)."""
        return Ack(delivery.message.msg_id, ok=error is None, error=(error or "")[:256])

    def acknowledged(self, sender: MemberInfo, ack: Ack) -> list[SendOutcome]:
        """The sends that ``ack`` completes: its ``msg_id`` as it says, each of ``more`` as ok."""
        outcomes = []
        first = (sender, DeliveryStatus.OK if ack.ok else DeliveryStatus.FAILED, ack.error)
        ok = (sender, DeliveryStatus.OK, "")  # ``more`` lists only sends handled without error
        for request_id, result in ((ack.msg_id, first), *((more, ok) for more in ack.more)):
            pending = self._pending.get(request_id)
            if pending is None or sender.id not in pending.targets or sender.id in pending.results:
                continue  # late, duplicate or foreign: the send already ended
            pending.results[sender.id] = result
            outcome = self._finish_if_done(request_id, pending)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def cancel(self, request_id: int) -> None:
        """Forget a send that never left (its message could not be written): nothing waits
        for it, and no timeout is reported for it later."""
        self._pending.pop(request_id, None)

    def member_gone(self, member: MemberInfo) -> list[SendOutcome]:
        """A target left: every send still waiting on it counts it as gone."""
        outcomes = []
        for request_id, pending in list(self._pending.items()):
            if member.id in pending.targets and member.id not in pending.results:
                pending.results[member.id] = (member, DeliveryStatus.GONE, "left the cluster")
                outcome = self._finish_if_done(request_id, pending)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def tick(self, now: float) -> list[SendOutcome]:
        """Time out every send whose deadline passed."""
        outcomes = []
        for request_id, pending in list(self._pending.items()):
            if now >= pending.deadline:
                for member_id, member in pending.targets.items():
                    if member_id not in pending.results:
                        pending.results[member_id] = (member, DeliveryStatus.TIMEOUT, "no acknowledgement in time")
                outcome = self._finish_if_done(request_id, pending)
                assert outcome is not None
                outcomes.append(outcome)
        return outcomes

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def _finish_if_done(self, request_id: int, pending: _Pending) -> SendOutcome | None:
        if len(pending.results) < len(pending.targets):
            return None
        del self._pending[request_id]
        return SendOutcome(request_id, MappingProxyType(dict(pending.results)))
