"""A state transfer being sent: the donor's side of :meth:`.replication.DeltaManager.stream`.

Split from the manager: the manager decides what an entry holds and how one is
applied; this module only walks the store in chunks and cuts batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .messages import MemberInfo

if TYPE_CHECKING:
    from .outgoing import Outgoing
    from .replication import DeltaManager

__all__ = ["CHUNK", "TransferStream", "ended_batches"]

CHUNK = 64  # sessions encoded per hold of the store's lock during a transfer


class TransferStream:
    """A state transfer being sent: one batch at a time, built only when the last was acknowledged.

    So the donor holds one batch of encoded sessions at a time, not a second copy
    of its whole store (Tomcat's donor heap doubles during a transfer).
    """

    def __init__(self, manager: DeltaManager, to: MemberInfo, session_ids: list[str], now_fn: Any) -> None:
        self.to = to
        self._manager = manager
        self._ids = session_ids
        self._now = now_fn
        self.sent = 0
        self.finished = False

    def __iter__(self) -> Iterator[Outgoing]:
        manager = self._manager
        batch: list[list[Any]] = []
        size = 0
        ids = self._ids
        for start in range(0, len(ids), CHUNK):
            with manager.store.lock:  # a few sessions at a time: requests are never held up long
                entries = manager._entries(ids[start : start + CHUNK], self._now())
            for entry in entries:
                batch.append(entry)
                size += len(entry[4]) + 64
                # A batch ends at batch_size sessions or batch_bytes, so it always fits a frame.
                if len(batch) >= manager.batch_size or size >= manager.batch_bytes:
                    self.sent += len(batch)
                    yield manager.sessions_message(batch, (self.to,))
                    batch, size = [], 0
        self.sent += len(batch)
        yield from self._ended(batch, size)
        self.finished = True

    def _ended(self, batch: list[list[Any]], size: int) -> Iterator[Outgoing]:
        """The last sessions, then every ended id and rotation edge; the last message says the
        transfer is complete."""
        dead, aliases = self._manager.ended(self._now())
        yield from ended_batches(self._manager, (self.to,), dead, aliases, batch, size)


def ended_batches(
    manager: DeltaManager,
    targets: tuple[MemberInfo, ...],
    dead: list[list[Any]],
    aliases: list[list[Any]],
    batch: list[list[Any]] | None = None,
    size: int = 0,
) -> Iterator[Outgoing]:
    """``sessions`` messages carrying ``batch`` (sessions), then ``dead`` (ended ids) and
    ``aliases`` (rotation edges), cut at ``batch_bytes`` as sessions are; the last is ``last``."""
    batch = batch or []
    out: dict[str, list[list[Any]]] = {"dead": [], "aliases": []}
    for field, items in (("dead", dead), ("aliases", aliases)):
        for item in items:
            size += _ENDED_SIZE + sum(len(part) for part in item if type(part) is str)
            out[field].append(item)
            if size >= manager.batch_bytes:
                yield manager.sessions_message(batch, targets, dead=out["dead"], aliases=out["aliases"])
                batch, size, out = [], 0, {"dead": [], "aliases": []}
    yield manager.sessions_message(batch, targets, last=True, dead=out["dead"], aliases=out["aliases"])


# What an ended id or a rotation edge adds to a batch besides its ids: msgpack's list and
# string headers, a stamp (a counter and a member id) and the seconds left.
_ENDED_SIZE = 64
