"""All-to-all session replication (Tomcat's DeltaManager), as a sans-IO state machine.

Every member holds every session. A request that changed a session ends with one
``delta`` to every member; a request that only read it sends at most a throttled
``access`` notice so the copies elsewhere do not expire while it is in use, and a request
still running keeps them alive with the same notice (:mod:`.keepalive`).

Where Tomcat's DeltaManager drops, races or blocks, this one does not:

* **Per-key stamps, not arrival order.** Every write of a key carries a Lamport
  stamp ``(counter, member id)``. A copy applies a set or remove only if its stamp
  is newer than the one it holds for that key, so a stale, duplicated or reordered
  delta never overwrites a newer value; two members writing different keys of one
  session both survive; on the same key the later write wins, identically on every
  member (the member id breaks ties). Tomcat replays deltas in arrival order.
* **Nothing is dropped for arriving early.** A delta for a session this member has
  never seen creates the copy (Tomcat drops a DELTA that beats its CREATED).
* **Tombstones.** An ended session's id is remembered until it could no longer be
  in use, and every later message for it is ignored: no resurrection by a late
  delta. A member that writes, uses or sends a copy of a session ended elsewhere missed
  the end (its sender died mid-send): it is told, drops its copy and passes the end on,
  so members never disagree for good about whether a session exists. A rotated id is
  remembered as an edge to the new one, with its stamp, so a late delta addressed to
  the old id still lands on the right session.
* **Concurrent rotations agree.** Two members that rotate one id at once (two
  requests with the same cookie) make two edges from it; every member keeps the
  edges with their stamps and holds the session under the id they designate
  (:mod:`.rotations`), whatever order they arrived in, merging per key what it
  held under the other. A browser that got the losing id is served the session
  and re-issued the winning one (:meth:`DeltaManager.successor`). Tomcat's
  members end up holding the session under different ids.
* **No clocks compared.** Deltas and notices reset the idle time of a copy on
  arrival; a state transfer carries how long each session has been idle, not
  when it was last used by another machine's clock.
* **State transfer streams.** A joining member asks one member for everything and
  receives it in batches, a bounded number in flight, while it already serves
  requests; a session asked for before its batch arrives is fetched on its own
  (``want`` with ids). Each session travels packed and the joiner keeps it packed
  (:class:`.store.Dormant`) until it is used or changed, so a transfer costs the joiner
  little more than the bytes, and a member passes on copies it never unpacked.

Inputs are method calls with ``now``; outputs are :class:`Outgoing` messages for
the node to send. Payloads are plain msgpack data; :func:`.payloads.check`
validates every field of what arrives before anything is applied.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from ..errors import RemoteProtocolError
from .copies import ZERO, CopyWriter, Meta, stamp_of
from .delta import SessionDelta
from .ended import Horizon, Tombstones
from .ending import Ending
from .entries import Unpacked, pack_entries, unpack_entry
from .keepalive import KeepAlive
from .listeners import fire
from .messages import MemberInfo
from .outgoing import Outgoing
from .payloads import ACCESS, MAX_IDS, SESSIONS, WANT, check, check_delta, check_entry, check_want
from .rotations import Rotations, Stamp
from .session import Session
from .store import Dormant, SessionStore
from .transfer import TransferRequests, TransferStream

__all__ = ["DeltaManager", "Outgoing", "TransferStream", "check_want"]

log = logging.getLogger("replisession.replication")


class DeltaManager(KeepAlive, Ending):
    """Replication of one member's store to every other member."""

    def __init__(
        self,
        store: SessionStore,
        local: MemberInfo,
        *,
        notify_listeners_on_replication: bool = True,
        access_throttle: float = 60.0,
        batch_size: int = 1000,
        batch_bytes: int = 1 << 20,
        transfer_patience: float = 30.0,
    ) -> None:
        self.store = store
        self.local = local
        self.notify = notify_listeners_on_replication
        self._writer = CopyWriter(store, notify_listeners_on_replication)
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self._counter = 0
        self._meta: dict[str, Meta] = {}
        self._tombstones = Tombstones()
        self._rotations = Rotations()  # every rotation edge, with its stamp, until its family's horizon
        idle = store.policy.max_inactive_interval
        # Notices at least four times per idle timeout, and at most once a minute.
        self.access_throttle = min(access_throttle, idle / 4) if idle else access_throttle
        self._horizon = Horizon(idle, self.access_throttle)
        self._shortest_own = math.inf  # the shortest idle timeout a session here was given
        self._asked = TransferRequests(transfer_patience)  # transfers asked for and not finished
        store.waker = self._wake
        store.rotated = self._rotated

    # -- this member's requests ------------------------------------------------------------

    #: True when a member without a copy must ask every member for it (copies are not everywhere).
    locates = False

    def replicate(self, delta: SessionDelta, now: float) -> Outgoing:
        """The message that carries a session's change (or end) to the others."""
        return self._delta_message(delta, now)

    def replicate_all(self, delta: SessionDelta, now: float) -> list[Outgoing]:
        """Every message a session's change (or end) needs: here, one delta to every member.

        A copy that expires here while another member owns the session goes silently: every
        member expires its own copy by its own idle time, and a request on the owner that
        outlasts the timeout keeps the copies alive only every ``access_throttle`` seconds
        (:meth:`keepalive`): an end from here could cut it short."""
        if delta.destroyed and delta.expired:
            meta = self._meta.get(delta.session_id)
            if meta is not None and meta.owner and meta.owner != self.local.id:
                del self._meta[delta.session_id]  # no tombstone: the owner's next delta may bring it back
                return []
        return [self._delta_message(delta, now)]

    def rebalance(self, session_ids: Iterable[str], now: float) -> list[Outgoing]:
        """What membership changes require of these sessions: nothing, every member holds every one."""
        return []

    def rebalanced(self) -> None:
        """The node went through every session since the last membership change."""

    def accessed(self, session: Session, now: float) -> list[Outgoing]:
        """A request read ``session`` without changing it: a notice, at most every ``access_throttle``
        seconds, so copies do not expire while it is in use, and at once when this member
        just took the session over (failover), so every member learns the new owner."""
        session_id = session.id
        if session_id is None or not session.accessed:
            return []
        meta = self._meta.setdefault(session_id, Meta())
        if meta.owner == self.local.id and now - meta.last_notice < self.access_throttle:
            return []
        meta.last_notice = now
        stamp = self._tick()
        meta.owner, meta.owner_stamp = self.local.id, stamp
        session._grace = 0.0
        return [Outgoing("access", {"id": session_id, "owner": self.local.id, "stamp": list(stamp)}, wait=False)]

    def _age(self, session_id: str, now: float) -> float:
        """Seconds since the session was created, so copies apply the same absolute lifetime."""
        session = self.store.peek(session_id)
        created = session.created_at if session is not None else None
        return max(0.0, now - created) if created is not None else 0.0

    def _delta_message(self, delta: SessionDelta, now: float) -> Outgoing:
        stamp = self._tick()
        session_id = delta.session_id
        if delta.destroyed:
            current = self._resolve(session_id)  # rotated by the same request: the new id ended too
            own = self._own_idle(session_id, current)  # the stamps moved to the new id at the rotation
            self._bury(session_id, now, own=own)
            if current != session_id:
                self._bury(current, now, own=own)
        else:
            self._record(delta, stamp, now)
        payload = {
            "id": session_id,
            "prev": delta.previous_id,
            "owner": self.local.id,
            "stamp": list(stamp),
            "sets": dict(delta.sets),
            "removes": sorted(delta.removes),
            "created": delta.created,
            "destroyed": delta.destroyed,
            "expired": delta.expired,
            "mii": delta.max_inactive_interval,
            "age": self._age(session_id, now),
        }
        return Outgoing("delta", payload)

    def _record(self, delta: SessionDelta, stamp: Stamp, now: float) -> None:
        """The stamps of this member's change (and its rotation's edge), where the session is held."""
        session_id = delta.session_id
        if delta.previous_id is not None:
            self._alias(delta.previous_id, session_id, stamp, now)
            if delta.previous_id in self._meta:  # the stamps follow the session to its new id
                self._meta[session_id] = self._meta.pop(delta.previous_id)
            held = self._resolve(session_id)
            if held != session_id:  # a concurrent rotation of the same id, with a newer stamp, won meanwhile
                self._fold(session_id, held, now)
                session_id = held
        meta = self._meta.setdefault(session_id, Meta())
        for key in (*delta.sets, *delta.removes):
            meta.stamps[key] = stamp
        meta.owner, meta.owner_stamp, meta.last_notice = self.local.id, stamp, now
        if delta.max_inactive_interval is not None:
            meta.mii_stamp, meta.idle = stamp, self._own_timeout(delta.max_inactive_interval)
        session = self.store.peek(session_id)
        if session is not None:
            session._grace = 0.0

    # -- what other members send --------------------------------------------------------------

    def receive(self, sender: MemberInfo, kind: str, payload: Any, now: float) -> list[Outgoing]:
        """Apply a message from ``sender``; returns replies (a state transfer's batches come from :meth:`stream`)."""
        if kind == "delta":
            body = check_delta(payload)
            partial = self._apply_delta(body, now)
            if partial is not None:  # the whole session, from the member that wrote this
                return [self.fetch([partial], (sender,))]
            if not body["destroyed"]:
                return self._ended_here(sender, [body["id"]], now)
        elif kind == "access":
            body = check(payload, ACCESS)
            missing = self._apply_access(body, now)
            if missing is not None:
                return [self.fetch([missing], (sender,))]
            return self._ended_here(sender, [body["id"]], now)
        elif kind == "sessions":
            body = check(payload, SESSIONS)
            entries = [check_entry(entry) for entry in body["sessions"]]  # all valid, or none taken
            for entry in entries:
                self._take_entry(entry, now)
            ended = []
            for session_id, left in body["dead"]:
                session_id = self._resolve(session_id)
                if session_id not in self._tombstones and session_id in self.store:
                    ended.append(session_id)
                self._apply_dead(session_id, now, left=left)
            for old, new, raw, left in body["aliases"]:
                self._witness(stamp_of(raw))
                self._apply_alias(old, new, stamp_of(raw), now, left=left)
            if body["last"] and self._asked.finished(sender):
                log.info("state transfer from %s complete: %d sessions here", sender, len(self.store))
            told = self._ended_here(sender, [entry[0] for entry in entries], now)
            return [*told, *self._pass_end(sender, ended, now)]
        elif kind == "want":
            ids = check(payload, WANT)["ids"]
            if ids is not None:  # on demand: these sessions, at once, in one reply
                entries = self._entries(ids, now)
                # With the rotations of their families: a cookie with a losing id finds the session there.
                edges = {edge[1]: edge for i in ids for edge in self._rotations.family(i, now)} if entries else {}
                return [self.sessions_message(entries, (sender,), aliases=list(edges.values()))]
        else:
            raise RemoteProtocolError(f"unknown replication message {kind!r}")
        return []

    def stream(self, to: MemberInfo, now_fn: Any) -> TransferStream:
        """Everything this member holds, for ``to``, in acknowledged batches (a state transfer)."""
        return TransferStream(self, to, self.store.ids(), now_fn)

    # -- membership ------------------------------------------------------------------------

    @property
    def transfer_done(self) -> bool:
        """No state transfer is under way (every one asked for has finished)."""
        return self._asked.done

    def request_transfer(self, members: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        """Ask each of ``members`` for every session it holds.

        Called for every member that joins or rejoins, not once per life: members
        that met late (started apart, a healed partition) exchange what the other
        lacks, and stamps and tombstones make a repeat harmless. Tomcat asks one
        member, once, at start-up.
        """
        return [Outgoing("want", {"ids": None}, (member,)) for member in self._asked.ask(members, now)]

    def retry_transfer(self, members: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        """A transfer not finished in time is asked for again (see :class:`.TransferRequests`)."""
        return self.request_transfer(self._asked.overdue(members, now), now)

    def member_left(self, member: MemberInfo, others: Iterable[MemberInfo], now: float) -> list[Outgoing]:
        """A member that leaves mid-transfer: the others were asked too, when they joined."""
        self._asked.finished(member)
        return []

    def fetch(self, session_ids: Iterable[str], targets: Iterable[MemberInfo]) -> Outgoing:
        """Ask ``targets`` for these sessions now (a request for one not transferred yet, or failover)."""
        return Outgoing("want", {"ids": list(session_ids)[:MAX_IDS]}, tuple(targets))

    def partial(self, session_id: str) -> bool:
        """This member holds only part of the session: a copy made of a delta alone, until a
        whole copy (a transfer, or the answer to asking for it) arrives. A request must fetch it."""
        session_id = self._resolve(session_id)
        self.store.peek(session_id)  # a packed copy says so only once unpacked
        meta = self._meta.get(session_id)
        return meta is not None and meta.partial

    def successor(self, session_id: str) -> str | None:
        """The id to serve a request whose cookie holds ``session_id``, when that is a losing
        leaf: the id another member's concurrent rotation made and lost (see :mod:`.rotations`).
        None for any other id: an id rotated away opens nothing (session fixation)."""
        canonical = self._rotations.successor(session_id, self.store.retired)
        return canonical if canonical is not None and canonical not in self._tombstones else None

    def owner_of(self, session_id: str) -> str | None:
        """The id of the member that served the session last, as far as this member knows;
        "" for a copy held packed since a transfer (another member's, not unpacked to ask);
        None: no record."""
        meta = self._meta.get(session_id)
        if meta is None:
            return None if self.store.dormant(session_id) is None else ""
        return meta.owner or None

    def tick(self, now: float) -> None:
        """Forget tombstones and rotations past their horizon, and the stamps of sessions
        the store expired on its own (not a store listener: listeners cost every write)."""
        for session_id, meta in list(self._meta.items()):
            if session_id not in self.store and session_id not in self._tombstones:
                if meta.held or meta.until <= now:
                    del self._meta[session_id]
        self._tombstones.forget(now)
        self._rotations.forget(now)

    # -- applying ------------------------------------------------------------------------

    def _tick(self) -> Stamp:
        self._counter += 1
        return (self._counter, self.local.id)

    def _witness(self, stamp: Stamp) -> None:
        if stamp[0] > self._counter:
            self._counter = stamp[0]

    def _rotating(self, session_id: str) -> bool:
        """A request here rotated ``session_id`` away and has not released the rotation yet."""
        new_id = self.store.retired.get(session_id)
        return new_id is not None and not self._rotations.descends(new_id, session_id)

    def _resolve(self, session_id: str) -> str:
        """The id this member holds ``session_id``'s session under: its family's canonical id."""
        return self._rotations.resolve(session_id, self.store.retired)

    def _resolve_released(self, session_id: str) -> str | None:
        """:meth:`_resolve`, or None for an id a request here is rotating (not released yet)."""
        return None if self._rotating(session_id) else self._resolve(session_id)

    def _apply_delta(self, body: Mapping[str, Any], now: float) -> str | None:
        """Apply a delta; the id of the copy it made, if it made one of a delta that did not
        create the session (a copy of part of the session: the rest must be asked for)."""
        stamp: Stamp = (body["stamp"][0], body["stamp"][1])
        self._witness(stamp)
        # Decode everything before changing anything: a value this member cannot read
        # (an unregistered type during a rolling deploy) must not leave half a delta applied.
        values = {key: self._loads(encoded) for key, encoded in body["sets"].items()}
        if body["prev"] is not None:
            self._apply_alias(body["prev"], body["id"], stamp, now)
        session_id = self._resolve(body["id"])
        if session_id in self._tombstones:
            return None  # ended: a late delta must not bring it back
        if body["destroyed"]:
            self._apply_dead(session_id, now, expired=body["expired"])
            return None
        meta = self._meta.setdefault(session_id, Meta())
        if self.store.peek(session_id) is None and not values:
            # Nothing to hold yet (a removal or rotation for a session not transferred
            # here): remember the stamps, so a late creation cannot bring removed keys
            # back, but keep no empty copy (it would look like an emptied session).
            for key in body["removes"]:
                meta.stamps[key] = max(stamp, meta.stamps.get(key, ZERO))
            meta.held, meta.until = False, self._horizon.until(meta.idle, now)
            return None
        session, created = self.store.replica(session_id, now)
        if created:
            session.created_at = now - body["age"]
            if self.notify and self.store.listeners:
                fire(self.store.listeners, "session_created", session)
        for key, encoded in body["sets"].items():
            if stamp > meta.stamps.get(key, ZERO):
                meta.stamps[key] = stamp
                self._writer.set(session, key, values[key], encoded)
        for key in body["removes"]:
            if stamp > meta.stamps.get(key, ZERO):
                meta.stamps[key] = stamp
                self._writer.remove(session, key)
        if body["mii"] is not None and stamp > meta.mii_stamp:
            meta.mii_stamp, meta.idle = stamp, self._own_timeout(body["mii"])
            session._max_inactive_interval = None if body["mii"] == float("inf") else float(body["mii"])
        self._touch(session, meta, body["owner"], stamp, now)
        if created and not body["created"]:
            # Made of a later delta alone (a joiner before its transfer, a copy that expired
            # here during a long request on the owner): never the whole session.
            meta.partial = True
            return session_id
        return None

    def _apply_alias(self, old_id: str, new_id: str, stamp: Stamp, now: float, left: float | None = None) -> None:
        """``old_id`` was rotated to ``new_id`` by the delta stamped ``stamp``: keep the edge, and
        move what this member held under an id that is no longer its family's canonical one
        (the old id's, or the losing side of a concurrent rotation) to the one that is."""
        before = dict.fromkeys((self._resolve(old_id), self._resolve(new_id), new_id))
        if not self._alias(old_id, new_id, stamp, now, left):
            return  # refused: a cycle, or a second parent for a fresh id
        canonical = self._resolve(new_id)
        family = dict.fromkeys((*before, canonical))
        if any(i in self._tombstones for i in (old_id, *family)):
            # Ended under one of its ids, concurrently with the rotation: the end wins, everywhere.
            for session_id in family:
                if session_id not in self._tombstones:
                    self._apply_dead(session_id, now)
            return
        for held in before:
            if held != canonical:
                self._fold(held, canonical, now)

    def _fold(self, previous: str, new_id: str, now: float) -> None:
        """Move the copy and stamps held under ``previous`` to ``new_id``, merging per key with a
        copy held there (the newer write or removal wins). A copy a request here is using is
        the one that stays (re-keyed), so the request's writes reach its release."""
        old = self.store.peek(previous)
        if old is None and previous not in self._meta:
            return
        old_meta = self._meta.pop(previous, None) or Meta()
        new = self.store.peek(new_id)
        if old is not None and new is not None and old._holders and not new._holders:
            meta = self._meta.pop(new_id, None) or Meta()
            self.store.drop(new_id)
            self.store.rename(previous, new_id)
            old_meta.held, old_meta.until = True, float("inf")
            self._meta[new_id] = old_meta
            self._writer.merge(new, meta, old, old_meta)
        elif old is not None and new is None:  # move the copy; what the new id had is removals only
            self.store.rename(previous, new_id)
            removals = self._meta.get(new_id)
            self._meta[new_id] = old_meta
            old_meta.held, old_meta.until = True, float("inf")
            for key, stamp in (removals.stamps if removals is not None else {}).items():
                if stamp > old_meta.stamps.get(key, ZERO):
                    old_meta.stamps[key] = stamp
                    self._writer.remove(old, key)
        elif old is not None and new is not None:  # both copies: per key, the newer write or removal
            self._writer.merge(old, old_meta, new, self._meta.setdefault(new_id, Meta()))
            self.store.drop(previous)
        else:  # no copy under the old id, only the stamps of removals: they still count
            meta = self._meta.setdefault(new_id, Meta(held=False, until=self._horizon.until(old_meta.idle, now)))
            for key, key_stamp in old_meta.stamps.items():
                if key_stamp > meta.stamps.get(key, ZERO):
                    meta.stamps[key] = key_stamp
                    if new is not None:  # a removal newer than the value held under the new id
                        self._writer.remove(new, key)

    def _apply_access(self, body: Mapping[str, Any], now: float) -> str | None:
        """A notice that the session is in use; the id to ask its sender for when no copy is
        held here (it expired here, quietly, during a long request on its owner)."""
        stamp: Stamp = (body["stamp"][0], body["stamp"][1])
        self._witness(stamp)
        session_id = self._resolve(body["id"])
        if session_id in self._tombstones:
            return None
        session = self.store.peek(session_id)
        if session is None:
            return session_id
        self._touch(session, self._meta.setdefault(session_id, Meta()), body["owner"], stamp, now)
        if body["owner"] == self.local.id:
            # Another member's request is using a session this member owns (its keep-alive):
            # the next notice comes within two throttles, whatever the session's own timeout.
            session._grace = 2 * self.access_throttle
        return None

    def _take_entry(self, entry: list[Any], now: float) -> bool:
        """A transferred session: kept packed if new here, merged at once if a copy is held.
        True when it changed what this member holds."""
        session_id, idle, age, mii, packed = entry
        session_id = self._resolve(session_id)
        if session_id in self._tombstones:
            return False
        interval = None if mii is None or mii == math.inf else float(mii)
        copy = Dormant(now - idle, now - age, interval, self.access_throttle, (mii, packed))
        if session_id in self.store:
            return self._merge(session_id, copy)
        self.store.hold(session_id, copy)
        return True

    def _rotated(self, old_id: str, new_id: str) -> None:
        """A request here rotated ``old_id`` to ``new_id`` (the store's hook; under its lock). The
        stamps move with the session at once, not when the request ends: a delta, a transfer or
        the timer meanwhile finds them under the id the session is held by."""
        meta = self._meta.pop(old_id, None)
        if meta is not None:
            self._meta[new_id] = meta

    def _wake(self, session_id: str, copy: Dormant) -> None:
        """Unpack a transferred copy into the store (the store's waker; under its lock)."""
        self._merge(session_id, copy)

    def _merge(self, session_id: str, copy: Dormant) -> bool:
        """Unpack a transferred copy into the store; True when it changed anything."""
        try:
            entry = unpack_entry(copy.data[1], self._loads)
        except (RemoteProtocolError, ValueError, TypeError, msgpack.UnpackException) as exc:
            # From an authenticated member, so a bug or a version mismatch: say so, and
            # serve as if the copy never came (a request gets a fresh session).
            log.error("a transferred copy of session %s cannot be read: %s", session_id, exc)
            return False
        return self._apply_entry(session_id, copy, entry)

    def _loads(self, encoded: bytes) -> Any:
        try:
            return self.store.serializer.loads(encoded)
        except Exception as exc:  # msgpack raises several types for bytes it cannot read
            raise RemoteProtocolError(f"a replicated value cannot be decoded: {exc}") from exc

    def _apply_entry(self, session_id: str, copy: Dormant, entry: Unpacked) -> bool:
        owner, owner_stamp, mii_stamp, values, stamps, partial = entry
        self._witness(owner_stamp)
        self._witness(mii_stamp)
        session, created = self.store.replica(session_id, copy.last_accessed)
        meta = self._meta.setdefault(session_id, Meta())
        if created:
            session.created_at = copy.created_at
            if self.notify and self.store.listeners:
                fire(self.store.listeners, "session_created", session)
        for raw in stamps.values():
            self._witness(stamp_of(raw))
        took = self._writer.take(session, meta, values, stamps, created=created) or created
        mii = copy.data[0]
        if mii is not None and (mii_stamp > meta.mii_stamp or created):
            meta.mii_stamp, meta.idle = mii_stamp, self._own_timeout(mii)
            session._max_inactive_interval = None if mii == math.inf else float(mii)
        if owner_stamp >= meta.owner_stamp:
            meta.owner, meta.owner_stamp = owner, owner_stamp
        # A whole copy completes a partial one; a partial copy passed on stays partial.
        meta.partial = partial if created else meta.partial and partial
        # Idle time, not a timestamp: another machine's clock never enters.
        if created or copy.last_accessed > (session.last_accessed or copy.last_accessed):
            session.last_accessed = copy.last_accessed
        session._grace = self.access_throttle if meta.owner != self.local.id else 0.0
        return took

    def _touch(self, session: Session, meta: Meta, owner: str, stamp: Stamp, now: float) -> None:
        session.last_accessed = now
        if stamp >= meta.owner_stamp:
            meta.owner, meta.owner_stamp = owner, stamp
        session._grace = self.access_throttle if meta.owner != self.local.id else 0.0

    def _alias(self, old: str, new: str, stamp: Stamp, now: float, left: float | None = None) -> bool:
        return self._rotations.link(old, new, stamp, self._horizon.until(self._own_idle(new, old), now, left))

    def sessions_message(
        self,
        entries: list[list[Any]],
        targets: tuple[MemberInfo, ...] | None,
        *,
        last: bool = False,
        dead: list[list[Any]] | None = None,
        aliases: list[list[Any]] | None = None,
    ) -> Outgoing:
        """A ``sessions`` message carrying transfer entries, and ``dead`` (ended ids) and
        ``aliases`` (rotation edges), each with the seconds it is still remembered here."""
        payload = {"sessions": entries, "last": last, "dead": dead or [], "aliases": aliases or []}
        return Outgoing("sessions", payload, targets)

    def _entries(self, session_ids: Iterable[str], now: float) -> list[list[Any]]:
        """Transfer entries (see :mod:`.entries`); a dormant copy is passed on still packed. A session
        a request here is rotating goes to nobody under the id it leaves (its new id is the
        browser's secret, its contents not released): the rotation's delta tells every member."""
        return pack_entries(
            self.store, session_ids, now, meta_of=self._meta.get, resolve=self._resolve_released, local=self.local.id
        )
