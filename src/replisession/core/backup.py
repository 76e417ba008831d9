"""Primary/backup replication (Tomcat's BackupManager), as a sans-IO state machine.

A session lives on its *primary* (the member that served it last) and on ``backups``
other members, chosen by rendezvous hashing over the live members (spread across
hosts first), so a write costs ``backups`` messages however large the cluster, load
spreads evenly, and a join or a death moves only the sessions whose placement it
changes. Everything else is the DeltaManager's (:mod:`.replication`): per-key stamps,
tombstones, rotation edges (:mod:`.rotations`), the transfer entry format and the delta.

Where Tomcat's BackupManager keeps one backup, never rebalances and tolerates one
failure, this one:

* **keeps 1 + k copies.** When a member dies, the first live holder of each session
  it owned (in placement order) promotes itself and places new backups; a primary
  whose backup died places a new one. Nothing waits for a request. With k backups,
  any k simultaneous failures leave a copy of every acknowledged write.
* **rebalances.** When a member joins, each primary re-places its sessions; the ones
  that now belong on the joiner are copied there, and a holder that is no longer
  needed drops its copy when the new placement reaches it.
* **serves anything anywhere.** A member without a copy fetches it (the node asks
  every member); serving it makes it the primary, and the placement it sends tells
  the old primary and the backups.

Backups keep their copies packed (:class:`.store.Dormant`): a delta unpacks, applies
and packs again, so a backup costs a fraction of a primary's memory. Listeners fire on
the member serving a session, not on backups (their copies are bytes).

Who is primary and who holds copies, and how a member places a session and follows the
placements of others, is :mod:`.placing`; this module is the protocol around it.

Messages beyond the DeltaManager's: ``placement`` (a session's owner, its stamp and its
ranked backups; a holder not named drops its copy unless ``keep``) and ``placements``
(many at once). A rebalance sends each member a few batches, not a message per session:
its full copies (``sessions``) first, then its placements (see :func:`.placement.batched`).
A rotation's edges also go to every member that is not a holder (``sessions`` with ``aliases``
only): one holding a copy fetched for a request drops it, so the old id opens nothing there.
``missing``: a holder that got a delta, an access notice or a placement naming it for a
session it holds no copy of (the full copy was lost to a failed send while it stayed a
member, or it dropped the copy on a placement that then lost) asks the sender, which sends
the copy and the placement again if it owns the session and counts the asker as one of its
backups.

A member that ended a session and hears of it as live (a copy, a write, a keep-alive or a
placement) tells the sender, as the DeltaManager does: the end's sender died mid-send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .copies import stamp_of
from .delta import SessionDelta
from .messages import MemberInfo
from .payloads import ACCESS, MAX_IDS, MISSING, PLACEMENT, check, check_delta, check_placements
from .placement import batched, place
from .placing import MISSING_RETRY, NO_SESSIONS, Placing
from .replication import Outgoing
from .session import Session
from .store import SessionStore
from .transfer import ended_batches

__all__ = ["MISSING_RETRY", "BackupManager", "place"]

#: Seconds after an end during which the death of its sender makes a holder pass it on: a
#: member that died mid-send is found dead within the drop time (3 s by default). Also how
#: long a claimant's write waits for its placement (see ``_claimed``).
END_RELAY_WINDOW = 60.0


class BackupManager(Placing):
    """Replication of each session to its primary and ``backups`` other members."""

    locates = True  # a member without a copy asks every member, not just the cookie's route

    def __init__(self, store: SessionStore, local: MemberInfo, *, backups: int = 1, **options: Any) -> None:
        options["notify_listeners_on_replication"] = False  # backups hold bytes; see the module doc
        super().__init__(store, local, backups=backups, **options)
        # Members that joined since the last rebalance: they may hold copies made on the other
        # side of a partition (even a member that started during it), so they are told.
        self._joined: set[str] = set()
        # Messages a fold produced, deep in applying something (see _fold): sent with its replies.
        self._relay: list[Outgoing] = []
        self._relaying = False  # applying the edges a losing id's owner relayed (see _fold)
        self._took: set[str] = set()  # sessions the message being received changed here
        # Ends applied here as a holder, passed on to the other holders only if their sender dies
        # within END_RELAY_WINDOW (it may have died mid-send): id -> (sender, others, payload, when).
        self._ends: dict[str, tuple[str, tuple[str, ...], Any, float]] = {}

    # -- this member's requests ------------------------------------------------------------

    def replicate_all(self, delta: SessionDelta, now: float) -> list[Outgoing]:
        session_id = delta.session_id
        if delta.previous_id is not None and delta.previous_id in self._placed:
            self._placed[session_id] = self._placed.pop(delta.previous_id)
        if delta.destroyed:
            placed = self._placed.pop(self._resolve(session_id), None) or self._placed.pop(session_id, None)
            if delta.expired and (placed is None or placed.owner != self.local.id):
                # Only the primary announces an expiry (as in the DeltaManager): a copy that
                # expires here is not evidence that the primary's session is idle. Nor is it
                # buried: the primary's next write asks for the copy again (see _receive_delta).
                self._meta.pop(session_id, None)
                return []
        message = self._delta_message(delta, now)
        if delta.destroyed:
            # An invalidation goes to every member, holders or not: one that fetched a copy for
            # a request (no placement names it), or whose fetch is being answered, must remember
            # the end too, or the old cookie still opens the session there.
            targets = tuple(m for m in self._members.values() if m.id != self.local.id)
            return [Outgoing("delta", message.payload, targets)] if targets else []
        return [*self._place(session_id, now, message), *self._relayed()]

    def accessed(self, session: Session, now: float) -> list[Outgoing]:
        session_id = session.id
        if session_id is None:
            return []
        placed = self._placed.get(session_id)
        taking_over = placed is None or placed.owner != self.local.id or session_id in self._void
        notices = super().accessed(session, now)
        if taking_over and session.accessed:
            return self._place(session_id, now, None)
        targets = self._live(placed.holders) if placed is not None else ()
        return [Outgoing(n.kind, n.payload, targets, wait=False) for n in notices if targets]

    def _rotated(self, old_id: str, new_id: str) -> None:
        """The placement follows the session to its new id at once: a placement or a delta for
        the old id that arrives before the request ends finds it (see :meth:`_lost`)."""
        super()._rotated(old_id, new_id)
        if old_id in self._placed:
            self._placed[new_id] = self._placed.pop(old_id)

    def _holders_of(self, session_id: str) -> tuple[MemberInfo, ...]:
        """The live copies of the placement; every member when no placement names this member
        (a copy fetched for a request): the placement it knows may be out of date."""
        placed = self._placed.get(session_id)
        if placed is None or self.local.id not in self._copies(placed):
            return tuple(self._members.values())
        return self._live(self._copies(placed))

    def tick(self, now: float) -> None:
        super().tick(now)
        for session_id in [i for i, asked in self._missing.items() if now - asked >= MISSING_RETRY]:
            del self._missing[session_id]
        self._foreign = {i for i in self._foreign if self._owned(i)}
        self._claimed = {
            i: (m, since)
            for i, (m, since) in self._claimed.items()
            if i in self._placed and m in self._members and now - since < END_RELAY_WINDOW
        }
        self._void = {i for i in self._void if self._owned(i)}
        self._ends = {i: e for i, e in self._ends.items() if now - e[3] < END_RELAY_WINDOW and e[0] in self._members}
        for session_id in [i for i, since in self._unplaced.items() if now - since >= MISSING_RETRY]:
            del self._unplaced[session_id]
            session = self.store.live(session_id)
            if session_id not in self._placed and (session is None or not session._holders):
                self._discard(session_id)  # not an end: the winner's holders keep the session

    def owner_of(self, session_id: str) -> str | None:
        placed = self._placed.get(session_id)
        return placed.owner if placed is not None else super().owner_of(session_id)

    # -- what other members send --------------------------------------------------------------

    def receive(self, sender: MemberInfo, kind: str, payload: Any, now: float) -> list[Outgoing]:
        self._relaying = kind == "sessions" and isinstance(payload, dict) and payload.get("sessions") == []
        try:
            replies = self._receive(sender, kind, payload, now)
        finally:
            self._relaying = False
        return [*replies, *self._relayed()] if self._relay else replies

    def _rotated_since(self, sender: MemberInfo, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """The rotation edges of sessions ``sender`` named by an id rotated since (its owner died
        before the rotation's delta reached it, and promoted it under the old id): it re-keys its
        copy and placement, so both members hold the session under one id."""
        rotated = {
            resolved
            for session_id in session_ids
            if (resolved := self._resolve(session_id)) != session_id and self._rotations.descends(resolved, session_id)
        }
        edges = [edge for session_id in sorted(rotated) for edge in self._rotations.family(session_id, now)]
        return [Outgoing("sessions", {**NO_SESSIONS, "aliases": edges}, (sender,))] if edges else []

    def _others(self, sender: MemberInfo) -> tuple[MemberInfo, ...]:
        return tuple(m for m in self._members.values() if m.id != sender.id)

    def _relayed(self) -> list[Outgoing]:
        relay, self._relay = self._relay, []
        return relay

    def _receive(self, sender: MemberInfo, kind: str, payload: Any, now: float) -> list[Outgoing]:
        if kind == "placement":
            body = check(payload, PLACEMENT)
            ids = [body["id"]]
            replies = self._apply_placement(body, now)
            return [*replies, *self._rotated_since(sender, ids, now), *self._ended_here(sender, ids, now)]
        if kind == "placements":
            out = []
            bodies = check_placements(payload)  # all valid, or none applied
            for body in bodies:
                out.extend(self._apply_placement(body, now))
            ids = [body["id"] for body in bodies]
            return [*self._batched(out), *self._rotated_since(sender, ids, now), *self._ended_here(sender, ids, now)]
        if kind == "missing":
            return self._resend(sender, check(payload, MISSING)["ids"], now)
        if kind == "access":
            body = check(payload, ACCESS)
            session_id = self._resolve(body["id"])
            if session_id not in self.store and session_id not in self._tombstones:
                placed = self._placed.get(session_id)
                if placed is None or self.local.id not in self._copies(placed):
                    return []  # a keep-alive sent to every member: this one holds no copy
                # A holder that lost its copy: the primary has it (a keep-alive's sender may not).
                return self._ask(self._members.get(placed.owner, sender), session_id, now)
            replies = super().receive(sender, kind, payload, now)
            placed = self._placed.get(session_id)
            if (
                placed is not None
                and placed.owner == self.local.id
                and sender.id not in self._copies(placed)
                and (body["owner"] != self.local.id or stamp_of(body["stamp"]) < placed.stamp)
            ):
                # A keep-alive from a member serving a copy no placement names (fetched) that
                # missed a takeover (it names another owner, or an older placement): it gets our
                # copy and placement, as a fetch would, so its release takes the session over from
                # this primary with this primary's writes.
                replies.extend(self._receive(sender, "want", {"ids": [session_id]}, now))
            return replies
        if kind == "delta":
            return self._receive_delta(sender, payload, now)
        self._took.clear()
        replies = super().receive(sender, kind, payload, now)
        if kind == "want" and replies:  # a fetch: the fetcher learns who held it, to tell them later
            for entry in replies[0].payload["sessions"]:
                placed = self._placed.get(entry[0])
                if placed is not None:
                    replies.append(Outgoing("placement", self._placement_body(entry[0], placed, keep=True), (sender,)))
        if kind == "sessions":
            for session_id, _ in payload["dead"]:
                self._placed.pop(self._resolve(session_id), None)
            replies.extend(self._rotated_since(sender, [entry[0] for entry in payload["sessions"]], now))
            forwards = []
            for entry in payload["sessions"]:
                session_id = self._resolve(entry[0])
                self._missing.pop(session_id, None)
                if self._owned(session_id):
                    # Another member's copy merged into ours (per-key stamps): a displaced owner
                    # after a partition. The backups need what it brought, if it brought anything
                    # (copies passed around a ring of members that each think they own it stop).
                    if session_id in self._took or session_id in self._foreign:
                        self._foreign.discard(session_id)
                        forwards.extend(self._forward(session_id, now))
                elif self._orphaned(session_id):
                    forwards.extend(self._place(session_id, now, None))  # promoted on the copy's arrival
                else:
                    self._compact(session_id, now)
            replies.extend(self._batched(forwards))
        return replies

    def _receive_delta(self, sender: MemberInfo, payload: Any, now: float) -> list[Outgoing]:
        body = check_delta(payload)
        session_id = self._resolve(body["id"])
        prev = body["prev"]
        held = session_id in self.store or (prev is not None and self._resolve(prev) in self.store)
        if not (body["destroyed"] or body["created"]) and not held and session_id not in self._tombstones:
            # No copy to apply it to: never a partial copy made of one delta. The sender
            # (the primary) is asked for the whole copy, and sends it only if this member
            # is one of its backups (the full copy was lost to a failed send).
            self._witness(stamp_of(body["stamp"]))
            if prev is not None:
                if prev in self._placed:
                    self._placed[session_id] = self._placed.pop(prev)
                self._apply_alias(prev, body["id"], stamp_of(body["stamp"]), now)
            return self._ask(sender, self._resolve(session_id), now)
        if prev is not None and prev in self._placed:
            self._placed[session_id] = self._placed.pop(prev)
        ended_before = session_id in self._tombstones
        replies = super().receive(sender, "delta", payload, now)
        current = self._resolve(body["id"])
        if body["destroyed"]:
            placed = self._placed.pop(session_id, None)
            if not ended_before and placed is not None and self.local.id in self._copies(placed):
                # If its sender dies mid-send, a holder it missed would defer to this one (the
                # first live holder) for a promotion that never comes, keeping a copy nobody
                # owns: this holder then passes the end on (see :meth:`member_left`).
                others = tuple(h for h in self._copies(placed) if h not in (sender.id, self.local.id))
                if others:
                    self._ends[session_id] = (sender.id, others, payload, now)
        elif prev is not None and current != body["id"] and self._owned(current):
            # A concurrent rotation that lost to ours: what it brought was merged into our copy
            # (its sender placed it elsewhere), and our backups need it.
            replies.extend(self._batched(self._forward(current, now)))
        else:
            placed = self._placed.get(current)
            if placed is not None and sender.id != placed.owner != self.local.id:
                # A write of a member taking the session over from the owner we follow: its
                # placement follows on the same connection, unless it dies first (see
                # :meth:`member_left`).
                self._claimed[current] = (sender.id, now)
            if self._owned(current):
                # The write of a member that took the session over at the same time as this
                # one. Our backups need it once that member hands its copy over (its placement
                # lost to ours), though that copy then brings nothing new; if its placement
                # wins instead, we hand ours over (see :meth:`_apply_placement`).
                self._foreign.add(current)
            self._compact(current, now)
        return replies

    def _fold(self, previous: str, new_id: str, now: float) -> None:
        """A copy moves to its family's canonical id. Rotated (``new_id`` descends from
        ``previous``): its placement follows. Lost a concurrent rotation: the winner's primary
        places the session, and this member's placement of the losing id is void. Its owner
        tells the backups it chose for the losing id which id won (they know nothing of the
        winner's rotation). Such a backup keeps the merged copy until the winner's placement
        arrives, which says whether it is a holder; if none comes (the winner's primary never
        heard of it), ``tick`` drops the copy: the losing owner's rotation delta took what it
        held to the winner."""
        placed = self._placed.pop(previous, None)
        rotated = self._rotations.descends(new_id, previous)
        session = self.store.live(previous)
        in_use = session is not None and session._holders > 0
        holder = placed is not None and self.local.id in self._copies(placed)
        if rotated and placed is not None and not holder and not in_use:
            # A copy fetched for a request (no placement names this member): the old id
            # opens nothing now, and a request with the new one fetches the new copy.
            self._discard(previous)
            return
        if in_use and (not rotated or not holder):
            # A request here is using it: re-keyed below, so its writes reach the new id; its
            # release places the session from the placement it followed (who held it is told),
            # with what the other side wrote asked for now and merged first.
            super()._fold(previous, new_id, now)
            if placed is not None:
                self._placed.setdefault(new_id, placed)
                if not rotated and placed.owner == self.local.id:
                    self._void.add(new_id)  # placed under the losing id: nobody followed that
            if self._members:
                self._relay.append(self.fetch([new_id], tuple(self._members.values())))
            return
        super()._fold(previous, new_id, now)
        if placed is not None and rotated:
            self._placed.setdefault(new_id, placed)
            rotator = self._members.get(self._rotations.rotated_by(new_id) or "")
            if self._relaying and placed.owner == self.local.id and rotator is not None:
                # Rotated by a member that told us only its edges, as it tells members that hold no
                # copy: it took the session over without knowing we own it. It hears our placement;
                # the older of the two hands its copy over to the other (see _apply_placement).
                body = self._placement_body(new_id, self._placed[new_id], keep=False)
                self._relay.append(Outgoing("placement", body, (rotator,)))
        elif placed is not None and placed.owner == self.local.id:
            holders = self._live(placed.holders)
            if holders:
                edges = self._rotations.family(new_id, now)
                self._relay.append(Outgoing("sessions", {**NO_SESSIONS, "aliases": edges}, holders))
            winner = self._members.get(self._rotations.rotated_by(new_id) or "")
            if winner is not None and new_id not in self._placed:
                # Our rotation lost to one whose delta we never got (we held no copy before it):
                # the winner's primary, the member that made it, gets what we held, and our
                # copy waits for its placement like any unplaced one.
                entries = self._entries([new_id], now)
                if entries:
                    self._relay.append(self.sessions_message(entries, (winner,)))
                self._unplaced.setdefault(new_id, now)
        elif self._relaying and new_id not in self._placed:
            self._unplaced.setdefault(new_id, now)

    def _take_entry(self, entry: list[Any], now: float) -> bool:
        if self._lost(entry[0]) and self._resolve(entry[0]) not in self.store:
            return False  # a copy for a backup the losing id's owner chose: no orphan copy of the winner
        took = super()._take_entry(entry, now)
        if took:
            self._took.add(self._resolve(entry[0]))
        return took

    def resend(self, member: MemberInfo, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """The full copies (and placements) of the sessions whose copy a send to ``member`` did
        not confirm: sent again by the node's timer, whether or not the session is used again."""
        return self._resend(member, session_ids, now)

    def _resend(self, member: MemberInfo, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """A member lacks the copy of these sessions: the full copy and the placement again, for
        each one this member owns and places on it (to any other member, nothing: a delta that
        reached a former backup does not make it one again). Replies: on the connection the
        request came by, so no delta sent later overtakes them."""
        out = []
        for requested in session_ids:
            session_id = self._resolve(requested)
            placed = self._placed.get(session_id)
            if placed is None or placed.owner != self.local.id or member.id not in placed.holders:
                continue
            entries = self._entries([session_id], now)
            if entries:
                out.append(self.sessions_message(entries, (member,)))
                out.append(Outgoing("placement", self._placement_body(session_id, placed, keep=False), (member,)))
        return self._batched(out)

    # -- membership ------------------------------------------------------------------------

    def request_transfer(self, members: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        """A member joined: nothing to ask for (each primary re-places, see :meth:`rebalance`),
        but what ended or was rotated here is told to it (with the seconds left for each): a
        member back from a partition may hold a copy of a session that ended meanwhile."""
        joined = []
        for member in members:
            self._members[member.id] = member
            self._joined.add(member.id)
            joined.append(member)
        dead, aliases = self.ended(now)
        if not joined or not (dead or aliases):
            return []
        return list(ended_batches(self, tuple(joined), dead, aliases))

    def retry_transfer(self, members: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        return []

    @property
    def transfer_done(self) -> bool:
        return True

    def member_left(self, member: MemberInfo, others: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        """A member died. For each session it was the primary of, whose first live holder is
        this member but whose full copy never reached it (a failed send not yet repeated), ask
        the others for it: the copy's arrival promotes this member (see :meth:`receive`).
        Without it, the next holder defers to this one and nobody would restore redundancy."""
        self._members.pop(member.id, None)
        out = self._claim_died(member, now)
        for session_id in [i for i, end in self._ends.items() if end[0] == member.id]:
            _, holders, payload, _ = self._ends.pop(session_id)
            targets = self._live(holders)
            if targets:
                out.append(Outgoing("delta", payload, targets))
        lacking = [
            session_id
            for session_id, placed in self._placed.items()
            if placed.owner == member.id and session_id not in self.store and self._should_own(session_id)
        ]
        if not lacking or not self._members:
            return out
        everyone = tuple(self._members.values())
        return out + [
            self.fetch(lacking[start : start + MAX_IDS], everyone) for start in range(0, len(lacking), MAX_IDS)
        ]

    def _claim_died(self, member: MemberInfo, now: float) -> list[Outgoing]:
        """``member`` died after its write of a session it was taking over reached this copy,
        and before its placement did: the owner we follow gets our copy (it may lack the write),
        and passes it to its backups."""
        out = []
        for session_id in [i for i, (claimant, _) in self._claimed.items() if claimant == member.id]:
            del self._claimed[session_id]
            placed = self._placed.get(session_id)
            owner = self._members.get(placed.owner) if placed is not None else None
            entries = self._entries([session_id], now) if owner is not None else []
            if placed is not None and owner is not None and entries:
                out.append(self.sessions_message(entries, (owner,)))
                # With the placement: the owner may have followed the dead member's placement and
                # dropped its copy; then ours arrives with none there, and it owns the session again.
                out.append(Outgoing("placement", self._placement_body(session_id, placed, keep=False), (owner,)))
        return out

    def rebalance(self, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """After a join or a death, for some of the stored sessions (the node goes through
        all of them a chunk at a time, sending each chunk's messages before it lets go of
        the store's lock): each one this member owns, or must now own (its primary died
        and this member is its first live holder), placed again."""
        out: list[Outgoing] = []
        joined = self._live(sorted(self._joined))
        for session_id in session_ids:
            session_id = self._resolve(session_id)
            if session_id in self.store and self._should_own(session_id):
                out.extend(self._place(session_id, now, None, also_tell=joined))
        return batched(out, self.sessions_message, self.batch_size, self.batch_bytes)

    def rebalanced(self) -> None:
        """The node went through every session since the last membership change."""
        self._joined.clear()
