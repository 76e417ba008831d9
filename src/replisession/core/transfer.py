"""A state transfer being sent: the donor's side of :meth:`.replication.DeltaManager.stream`.

Split from the manager: the manager decides what an entry holds and how one is
applied; this module only walks the store in chunks and cuts batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .messages import MemberInfo

if TYPE_CHECKING:
    from .replication import DeltaManager, Outgoing

__all__ = ["CHUNK", "TransferStream"]

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
                    yield self._batch(batch, False)
                    batch, size = [], 0
        self.sent += len(batch)
        yield self._batch(batch, True)
        self.finished = True

    def _batch(self, entries: list[list[Any]], last: bool) -> Outgoing:
        return self._manager.sessions_message(entries, (self.to,), last=last)
