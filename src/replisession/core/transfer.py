"""A state transfer being sent: the donor's side of :meth:`.replication.DeltaManager.stream`.

Split from the manager: the manager decides what an entry holds and how one is
applied; this module only walks the store in chunks and cuts batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .messages import MemberInfo

if TYPE_CHECKING:
    from .outgoing import Outgoing
    from .replication import DeltaManager

__all__ = ["CHUNK", "TransferRequests", "TransferStream", "ended_batches"]

CHUNK = 64  # sessions encoded per hold of the store's lock during a transfer

log = logging.getLogger("replisession.replication")


class TransferRequests:
    """The state transfers a member asked for and has not received whole: the joiner's side.

    One not finished within ``patience`` seconds is asked for again (the stream may have
    failed: a slow joiner, a lost connection); one from a member that is gone is forgotten.
    """

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._asked: dict[str, tuple[MemberInfo, float]] = {}  # member id -> (member, give up at)

    @property
    def done(self) -> bool:
        return not self._asked

    def ask(self, members: Iterable[MemberInfo], now: float) -> list[MemberInfo]:
        """Those of ``members`` not asked yet, now asked."""
        asked = []
        for member in members:
            if member.id not in self._asked:
                self._asked[member.id] = (member, now + self.patience)
                asked.append(member)
        return asked

    def finished(self, member: MemberInfo) -> bool:
        """``member``'s transfer ended (its last batch came, or it left); False if none was under way."""
        return self._asked.pop(member.id, None) is not None

    def overdue(self, present: Iterable[MemberInfo], now: float) -> list[MemberInfo]:
        """The members whose transfer ran out of patience (forgotten here, to be asked again);
        transfers from members no longer ``present`` are forgotten."""
        ids = {member.id for member in present}
        again = []
        for member_id, (member, deadline) in list(self._asked.items()):
            if member_id not in ids:
                del self._asked[member_id]
            elif now >= deadline:
                log.warning("state transfer from %s did not complete; asking again", member)
                del self._asked[member_id]
                again.append(member)
        return again


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
