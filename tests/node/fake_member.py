"""A stand-in for ClusterMember with what the Replicator uses of it: sends are recorded, and
either answered at once (``answer``) or left for the test to end with :func:`outcome`."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from replisession.cluster_config import ClusterConfig
from replisession.core.channel import DeliveryStatus, SendOutcome
from replisession.core.messages import MemberInfo, SendMode
from replisession.core.store import SessionStore
from replisession.node.metrics import Metrics
from replisession.node.replicator import Replicator

A = MemberInfo("a", "127.0.0.1", 4001, "a" * 32)
B = MemberInfo("b", "127.0.0.1", 4002, "b" * 32)

Sent = tuple[str, Any, SendMode, tuple[MemberInfo, ...], concurrent.futures.Future[SendOutcome]]


def outcome(status: DeliveryStatus) -> SendOutcome:
    """How member B answered a send."""
    return SendOutcome(1, MappingProxyType({B.id: (B, status, "")}))


class FakeMember:
    """Member A; ``live``: the other members it sees; ``answer``: B acknowledges every send at once."""

    def __init__(self, live: Sequence[MemberInfo] = (B,), *, answer: bool = False) -> None:
        self.listeners: list[Any] = []
        self.on_bound: Any = None
        self.handlers: dict[str, Any] = {}
        self.metrics = Metrics()
        self.local = A
        self.live = list(live)
        self.answer = answer
        self.sent: list[Sent] = []

    def on(self, kind: str, handler: Any) -> None:
        self.handlers[kind] = handler

    def members(self) -> list[MemberInfo]:
        return list(self.live)

    def send(
        self, kind: str, payload: Any, mode: SendMode, targets: Any = None
    ) -> concurrent.futures.Future[SendOutcome]:
        future: concurrent.futures.Future[SendOutcome] = concurrent.futures.Future()
        self.sent.append((kind, payload, mode, tuple(targets or self.live), future))
        if self.answer:
            future.set_result(outcome(DeliveryStatus.OK))
        return future

    def post(self, kind: str, payload: Any, targets: Any = None) -> None:
        """An async send nobody waits for: recorded with a future that is already done."""
        future: concurrent.futures.Future[SendOutcome] = concurrent.futures.Future()
        future.set_result(outcome(DeliveryStatus.OK))
        self.sent.append((kind, payload, SendMode.ASYNC, tuple(targets or self.live), future))


def replicator_of(member: FakeMember, manager: str) -> tuple[Replicator, SessionStore]:
    """A Replicator (sync mode, ``manager``) for ``member`` as member A, on a store of its own:
    bound, and the store's changes sent as a node sends them."""
    store = SessionStore(lock=threading.RLock())
    config = ClusterConfig(manager=manager, send_mode="sync", members=(), route="a")
    node = Replicator(store, member, config, clock=lambda: 100.0)  # type: ignore[arg-type]
    member.on_bound(A)
    store.change_sink = node.on_delta
    return node, store
