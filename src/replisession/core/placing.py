"""Placing sessions: which member is a session's primary, and which hold its copies.

Split from :mod:`.backup`, whose :class:`~.backup.BackupManager` is this class plus the
protocol around it (what requests send, what arrives, repair after deaths and joins).
Here is the state of placement and the decisions on it: a member places a session when
it serves it (:meth:`Placing._place`: the delta to holders that have a copy, full copies
to new backups, the placement to everyone concerned), follows the placements others send
(:meth:`Placing._apply_placement`: the newer stamp wins; a displaced owner hands its copy
over; a holder no longer named drops its copy), and promotes itself when a dead
primary's first live holder (:meth:`Placing._should_own`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .copies import stamp_of
from .messages import MemberInfo
from .outgoing import Outgoing
from .placement import Placement, batched, place
from .replication import DeltaManager
from .store import SessionStore

__all__ = ["MISSING_RETRY", "NO_SESSIONS", "Placing"]

#: Seconds a backup waits for the full copy it asked for before asking again.
MISSING_RETRY = 5.0

#: A ``sessions`` message without copies: what one that only carries rotation edges adds to.
NO_SESSIONS = {"sessions": [], "last": False, "dead": []}


class Placing(DeltaManager):
    """A DeltaManager whose sessions live on a primary and ``backups`` other members."""

    def __init__(self, store: SessionStore, local: MemberInfo, *, backups: int = 1, **options: Any) -> None:
        super().__init__(store, local, **options)
        if not isinstance(backups, int) or isinstance(backups, bool) or backups < 1:
            raise ValueError(f"backups must be a whole number >= 1, not {backups!r}")
        self.backups = backups
        self._members: dict[str, MemberInfo] = {}  # the other live members
        self._placed: dict[str, Placement] = {}
        # Copies merged from a losing id's backup, waiting for the winner's placement: id -> since when.
        self._unplaced: dict[str, float] = {}
        # Sessions this member owns that another member's delta changed: forwarded with its copy.
        self._foreign: set[str] = set()
        # Sessions whose copy here took the delta of a member taking them over, before its
        # placement: id -> (that member's id, when).
        self._claimed: dict[str, tuple[str, float]] = {}
        # Sessions this member placed under an id that then lost a concurrent rotation, while a
        # request here used them: the others ignored that placement, so the next one goes to all.
        self._void: set[str] = set()
        # Sessions this member asked for a full copy of (see _ask): id -> when.
        self._missing: dict[str, float] = {}

    def _ask(self, sender: MemberInfo, session_id: str, now: float) -> list[Outgoing]:
        """Ask ``sender`` for the full copy of a session this member holds none of (at most
        every ``MISSING_RETRY`` seconds: a write burst asks once)."""
        asked = self._missing.get(session_id)
        if asked is not None and now - asked < MISSING_RETRY:
            return []
        self._missing[session_id] = now
        return [Outgoing("missing", {"ids": [session_id]}, (sender,))]

    def _lost(self, session_id: str) -> bool:
        """``session_id`` lost a concurrent rotation here: its family's id is on another branch.
        What its owner placed or copied under it, still on its way, is void (its writes reached
        the winner with the rotation's delta)."""
        canonical = self._resolve(session_id)
        if canonical == session_id or self._rotations.descends(canonical, session_id):
            return False
        return not self._rotating(session_id)  # a rotation a request here is making: not a lost branch

    def _owned(self, session_id: str) -> bool:
        """This member is the session's primary and holds it."""
        placed = self._placed.get(session_id)
        return placed is not None and placed.owner == self.local.id and session_id in self.store

    def _forward(self, session_id: str, now: float) -> list[Outgoing]:
        """The full copy of a session this member owns, for its live backups: the member whose
        copy it merged too, if it is one of them (it may have dropped its copy since it sent it,
        on a placement that did not name it, and hold only ours from before the merge)."""
        placed = self._placed.get(session_id)
        holders = self._live(placed.holders) if placed is not None else ()
        return [self.sessions_message(self._entries([session_id], now), holders)] if holders else []

    def _batched(self, messages: list[Outgoing]) -> list[Outgoing]:
        """Full copies and placements as a few messages per member; anything else (a fetch, a
        rotation's edges alone) goes as it is, after them."""
        if len(messages) < 2:
            return messages  # one message stays as it is
        batchable: list[Outgoing] = []
        rest: list[Outgoing] = []
        for message in messages:
            copies = message.kind == "sessions" and message.payload["sessions"]
            (batchable if copies or message.kind == "placement" else rest).append(message)
        if rest:
            return [*self._batched(batchable), *rest]
        return batched(messages, self.sessions_message, self.batch_size, self.batch_bytes)

    def _orphaned(self, session_id: str) -> bool:
        """Held here, its primary dead, and this member its first live holder: to be promoted."""
        placed = self._placed.get(session_id)
        return (
            placed is not None
            and placed.owner != self.local.id
            and placed.owner not in self._members
            and session_id in self.store
            and self._should_own(session_id)
        )

    def _should_own(self, session_id: str) -> bool:
        placed = self._placed.get(session_id)
        if placed is None or placed.owner == self.local.id:
            return True  # ours, or a copy nobody told us about (fetched; its owner gone)
        if placed.owner in self._members:
            return False  # its primary is alive and places it
        # Promotion: the first live holder of a dead primary's session takes it over.
        live = [h for h in placed.holders if h == self.local.id or h in self._members]
        return not live or live[0] == self.local.id

    def _place(
        self, session_id: str, now: float, delta: Outgoing | None, also_tell: tuple[MemberInfo, ...] = ()
    ) -> list[Outgoing]:
        """This member is (now) the primary: the delta to holders that have a copy, full
        copies to new backups, and the placement to everyone concerned when it changed.

        ``also_tell``: members that joined, which may believe they own the session too
        (after a partition); the placement with the newer stamp wins everywhere."""
        old = self._placed.get(session_id)
        # A member that (re)joined may have lost what we sent it while we counted it gone
        # (a timed-out copy, a dropped connection): it gets a full copy again, not a delta.
        had = {member.id for member in self._live(self._copies(old))} - {m.id for m in also_tell}
        wanted = place(session_id, self.local, self._members.values(), self.backups)
        out: list[Outgoing] = []
        # Our copy took another member's write (a claimant's delta) that its holders may lack:
        # every holder gets the full copy. Also when we merged it following another owner: the
        # claimant sent it to the holders it chose, not to every one we keep.
        claimed = self._claimed.pop(session_id, None) is not None
        foreign = session_id in self._foreign or claimed
        self._foreign.discard(session_id)
        keep = tuple(self._members[m] for m in wanted if m in had)
        if delta is not None and delta.payload["prev"] is not None:
            # A rotation: every holder follows it, then drops it if not wanted. Every other member
            # learns its edges first: one holding a copy fetched for a request drops it, so the
            # old id opens nothing there (a login's fixation protection), as an end does.
            keep = self._live(sorted(had))
            others = tuple(m for m in self._members.values() if m not in keep)
            if others:
                edges = self._rotations.family(session_id, now)
                out.append(Outgoing("sessions", {**NO_SESSIONS, "aliases": edges}, others))
        if delta is not None and keep:
            out.append(Outgoing("delta", delta.payload, keep))
        fresh = tuple(self._members[m] for m in wanted if m not in had or foreign)
        if fresh:
            entries = self._entries([session_id], now)
            if entries:
                out.append(self.sessions_message(entries, fresh))
        void = session_id in self._void
        self._void.discard(session_id)
        if old is None or old.owner != self.local.id or old.holders != wanted or also_tell or void:
            stamp = self._tick()
            meta = self._meta.get(session_id)
            if meta is not None:
                meta.owner, meta.owner_stamp = self.local.id, stamp
            placed = Placement(self.local.id, stamp, wanted)
            self._placed[session_id] = placed
            replaces = old.owner if old is not None else ""
            told = self._live(sorted(had | set(wanted) | {m.id for m in also_tell}))
            if void:
                told = tuple(self._members.values())
            if told:
                body = self._placement_body(session_id, placed, keep=False, replaces=replaces)
                out.append(Outgoing("placement", body, told))
        return out

    def _hand_over(self, session_id: str, old: Placement, placed: Placement, now: float) -> list[Outgoing]:
        """A newer placement names an owner that did not know the one we followed (both
        sides of a healed partition served the session): our copy goes to the new owner,
        which merges it per key and passes the result to its backups; if we owned it, our
        backups learn the new placement."""
        out = []
        owner = self._members.get(placed.owner)
        entries = self._entries([session_id], now)
        if owner is not None and entries:
            out.append(self.sessions_message(entries, (owner,)))
        ours = self._live(h for h in old.holders if h != placed.owner and h not in placed.holders)
        if ours and old.owner == self.local.id:
            body = self._placement_body(session_id, placed, keep=False, replaces=placed.owner)
            out.append(Outgoing("placement", body, ours))
        followed = self._members.get(old.owner)
        if followed is not None and old.owner != placed.owner:
            # The owner we followed took the session over at the same time as the new one (two
            # members that fetched it served it at once): it hears of the newer placement, which
            # did not know it, and hands its copy over in turn.
            body = self._placement_body(session_id, placed, keep=False)
            out.append(Outgoing("placement", body, (followed,)))
        return out

    def _apply_placement(self, body: Mapping[str, Any], now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        stamp = stamp_of(body["stamp"])
        self._witness(stamp)
        session_id = self._resolve(body["id"])
        if session_id in self._tombstones or self._lost(body["id"]):
            return out  # ended; or placed under an id that lost a concurrent rotation (the winner places it)
        self._unplaced.pop(session_id, None)  # the winner's placement: it decides from here
        self._claimed.pop(session_id, None)
        old = self._placed.get(session_id)
        if old is not None and stamp <= old.stamp:
            claimant = self._members.get(body["owner"])
            if claimant is not None and body["owner"] != old.owner and not body["keep"]:
                # An older placement from a member that took the session over at the same time
                # as the one we follow: it is told the newer placement, and hands its copy over.
                out.append(Outgoing("placement", self._placement_body(session_id, old, keep=False), (claimant,)))
            return out  # an older placement, reordered
        placed = Placement(body["owner"], stamp, tuple(body["holders"]))
        me = self.local.id
        if body["keep"] and placed.owner == me and (old is None or old.owner != me):
            # An answer to a fetch of ours, made before a newer placement took the session from
            # us (we forgot that one with our copy): we are not its primary now.
            return out
        if placed.owner != me:
            self._foreign.discard(session_id)  # no longer ours to pass on (our copy goes to the owner)
        if old is not None and old.owner != placed.owner != me and body["replaces"] != old.owner and not body["keep"]:
            # The new owner did not know the owner we followed: both sides of a healed
            # partition served it. Our copy may hold writes it never saw.
            out.extend(self._hand_over(session_id, old, placed, now))
        elif old is not None and old.owner == me != placed.owner:
            # Taken over from us by a member that fetched the session earlier (no stickiness):
            # writes we made since its fetch are in our copy only (and our backups'), so the
            # new owner gets it and merges it per key. Also when the placement only answers a
            # fetch or a keep-alive of ours (``keep``): we took the session over meanwhile.
            owner = self._members.get(placed.owner)
            entries = self._entries([session_id], now) if owner is not None else []
            if owner is not None and entries:
                out.append(self.sessions_message(entries, (owner,)))
        if body["keep"] or me == placed.owner or me in placed.holders:
            self._placed[session_id] = placed
            meta = self._meta.get(session_id)
            if meta is not None and stamp >= meta.owner_stamp:
                meta.owner, meta.owner_stamp = placed.owner, stamp
            self._compact(session_id, now)
            owner = self._members.get(placed.owner)
            if me in placed.holders and not body["keep"] and session_id not in self.store and owner is not None:
                # Named a backup without the copy: the owner counted on the one we held, which a
                # placement that lost to this one made us drop meanwhile (its copy comes first
                # otherwise, on the same connection).
                out.extend(self._ask(owner, session_id, now))
            return out
        session = self.store.live(session_id)
        if session is not None and session._holders:
            self._placed[session_id] = placed  # a request here is using it: its release re-places it
            owner = self._members.get(placed.owner)
            if owner is not None:
                # The new primary's copy may hold writes made there meanwhile: merged into ours
                # (per key) before our release re-places the session from it.
                out.append(self.fetch([body["id"]], (owner,)))  # the id it knows (a rotation here is unreleased)
            return out
        self._placed.pop(session_id, None)
        self._discard(session_id)  # no longer a holder: not an end, so no tombstone
        return out

    def _discard(self, session_id: str) -> None:
        """Drop a copy this member no longer holds (not an end): the copy first, then its stamps.
        Dropping a packed copy unpacks it when there are listeners, which records its stamps
        again; stamps left without a copy would make an older copy that arrives later look
        newer than it is, and it would be merged without the writes they stand for."""
        self.store.drop(session_id)
        self._meta.pop(session_id, None)

    def _compact(self, session_id: str, now: float) -> None:
        """Pack a backup's copy again (a delta or a transfer unpacked it)."""
        placed = self._placed.get(session_id)
        session = self.store.live(session_id)
        if session is None or session._holders or placed is None or placed.owner == self.local.id:
            return
        entries = self._entries([session_id], now)
        self.store.drop(session_id)
        self._meta.pop(session_id, None)  # the packed copy carries the stamps
        if entries:
            self._take_entry(entries[0], now)

    def _placement_body(self, session_id: str, placed: Placement, *, keep: bool, replaces: str = "") -> dict[str, Any]:
        """``replaces``: the owner the sender knew it replaced ("" if none): that one need not hand over."""
        return {
            "id": session_id,
            "owner": placed.owner,
            "stamp": list(placed.stamp),
            "holders": list(placed.holders),
            "keep": keep,
            "replaces": replaces,
        }

    def _copies(self, placed: Placement | None) -> list[str]:
        if placed is None:
            return []
        return [*placed.holders, placed.owner]

    def _live(self, ids: Iterable[str]) -> tuple[MemberInfo, ...]:
        return tuple(self._members[i] for i in dict.fromkeys(ids) if i in self._members)
