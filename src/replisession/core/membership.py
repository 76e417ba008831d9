"""Cluster membership and failure detection, as a sans-IO state machine.

Tomcat's McastService + StaticMembershipInterceptor + TcpFailureDetector, with
what they lack:

* **Seeds with gossip.** A member dials its seeds; every heartbeat carries the
  sender's list of live members, so one live seed is enough to learn (and dial)
  everyone. Multicast discovery feeds :meth:`discovered` instead.
* **Only authenticated peers are members.** Gossip and beacons only cause dials;
  a member joins when a connection to it completed the authenticated handshake
  (:meth:`connected`). A refused member never joins, so it never gets a session.
* **Identity is (route, address, incarnation).** A restarted process has a new
  incarnation; meeting it at an address a known member had means that member
  restarted: the old incarnation is removed at once.
* **Suspect, then verify.** A member silent for ``drop_time`` becomes suspect and
  is probed over TCP (:class:`Probe`); a failed probe removes it, a successful one
  keeps it suspect until it speaks again, or until ``suspect_timeout`` (a process
  hung while its kernel still accepts connections cannot stay a member forever,
  unlike Tomcat's). A lost connection is probed at once, so a killed process is
  removed within a probe's time; while a probe still finds a listener there, it is
  repeated after ``REPROBE_FIRST`` seconds, then twice as long each time up to
  ``heartbeat_interval`` (a killed process closes its sockets one by one, so the
  first probe can still reach its listening socket). A graceful
  :class:`~..wire.messages.Leave` removes the sender at once.

Inputs are method calls with ``now``; outputs are lists of effects (what the
node must do) and events (what listeners hear), both frozen dataclasses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .messages import Heartbeat, Leave, MemberInfo, Message

__all__ = [
    "REPROBE_FIRST",
    "Connect",
    "Disconnect",
    "Effect",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberSuspected",
    "Membership",
    "Probe",
    "SendTo",
]

Address = tuple[str, int]
_MAX_DEPARTED = 4096
_DIAL_PATIENCE = 15.0  # seconds a dial may go unanswered (the transport gives up well before)


class MemberState(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"


# -- effects: what the node must do -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Dial this address (the handshake will tell who is there)."""

    address: Address


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close any connection to this member."""

    member: MemberInfo


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send ``message`` to this member over its connection."""

    member: MemberInfo
    message: Message


@dataclass(frozen=True, slots=True)
class Probe:
    """Check with a bare TCP connect whether anything still listens at the member's address."""

    member: MemberInfo


# -- events: what listeners hear ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberJoined:
    member: MemberInfo


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    member: MemberInfo


@dataclass(frozen=True, slots=True)
class MemberLeft:
    member: MemberInfo
    reason: str  # "left" (graceful), "crashed" (probe failed), "restarted", "unresponsive"


Effect = Connect | Disconnect | SendTo | Probe | MemberJoined | MemberSuspected | MemberLeft

#: After a lost connection, how soon a probe that still found a listener is repeated (the
#: delay then doubles up to ``heartbeat_interval``). The node's tick, every tenth of a
#: second at most, is what runs it, so a killed member goes within a tick or two instead
#: of a heartbeat interval.
REPROBE_FIRST = 0.05


@dataclass(slots=True)
class _Peer:
    info: MemberInfo
    last_heard: float
    state: MemberState = MemberState.ALIVE
    suspect_since: float = 0.0
    next_probe: float = 0.0
    reprobe: float = 0.0  # after a lost connection: the wait before the next probe
    probing: bool = False
    connected: bool = True


@dataclass(slots=True)
class _Dial:
    next_at: float = 0.0
    backoff: float = 0.0
    pending: bool = False
    pending_since: float = 0.0
    refused: bool = False


@dataclass(slots=True)
class _Timers:
    next_heartbeat: float = 0.0
    started: bool = False
    left: bool = False
    seeds: tuple[Address, ...] = field(default_factory=tuple)


class Membership:
    """Who is in the cluster, as seen by one member."""

    def __init__(
        self,
        local: MemberInfo,
        *,
        seeds: Iterable[Address] = (),
        heartbeat_interval: float = 0.5,
        drop_time: float = 3.0,
        suspect_timeout: float | None = None,
        max_backoff: float = 5.0,
        refused_backoff: float = 30.0,
    ) -> None:
        if drop_time <= heartbeat_interval:
            raise ValueError("drop_time must be longer than heartbeat_interval")
        self.local = local
        self.heartbeat_interval = heartbeat_interval
        self.drop_time = drop_time
        self.suspect_timeout = suspect_timeout if suspect_timeout is not None else 5 * drop_time
        self.max_backoff = max_backoff
        self.refused_backoff = refused_backoff
        self._peers: dict[str, _Peer] = {}
        self._dials: dict[Address, _Dial] = {}
        # Incarnations that left or restarted are gone for good: stale gossip about
        # them must not bring them back. Bounded: the oldest are forgotten first.
        self._departed: dict[str, None] = {}
        self._timers = _Timers(seeds=tuple(a for a in seeds if a != local.address))
        for address in self._timers.seeds:
            self._dials[address] = _Dial()

    # -- queries ---------------------------------------------------------------------------

    @property
    def seeds(self) -> tuple[Address, ...]:
        return self._timers.seeds

    def members(self) -> list[MemberInfo]:
        """Every other member that is in the cluster now (alive or suspect), oldest first.

        Safe to call from another thread: the table is copied in one step (``tuple()``
        of a dict view runs in C, under the GIL) before it is walked.
        """
        return [peer.info for peer in tuple(self._peers.values())]

    def alive(self) -> list[MemberInfo]:
        return [peer.info for peer in self._peers.values() if peer.state is MemberState.ALIVE]

    def state_of(self, member_id: str) -> MemberState | None:
        peer = self._peers.get(member_id)
        return peer.state if peer is not None else None

    def get(self, member_id: str) -> MemberInfo | None:
        peer = self._peers.get(member_id)
        return peer.info if peer is not None else None

    # -- inputs ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Drive heartbeats, dials and failure detection; call at least every heartbeat_interval."""
        if self._timers.left:
            return []
        effects: list[Effect] = []
        timers = self._timers
        if not timers.started or now >= timers.next_heartbeat:
            timers.started = True
            timers.next_heartbeat = now + self.heartbeat_interval
            beat = Heartbeat((self.local, *self.members()))
            effects.extend(SendTo(peer.info, beat) for peer in self._peers.values() if peer.connected)
        for peer in list(self._peers.values()):
            effects.extend(self._check(peer, now))
        for address, dial in self._dials.items():
            if dial.pending and now - dial.pending_since >= _DIAL_PATIENCE:
                # No answer at all: the dial reached a member we know under another
                # address, or lost the transport's de-duplication. Free it for a retry.
                dial.pending = False
            if not dial.pending and now >= dial.next_at and not self._connected_to(address):
                dial.pending = True
                dial.pending_since = now
                effects.append(Connect(address))
        return effects

    def connected(self, peer: MemberInfo, now: float) -> list[Effect]:
        """A connection to ``peer`` completed the authenticated handshake."""
        if peer.id == self.local.id:
            return []
        if self._timers.left or peer.id in self._departed:
            return [Disconnect(peer)]
        effects: list[Effect] = []
        dial = self._dials.get(peer.address)
        if dial is not None:
            dial.pending = False
            dial.backoff = 0.0
            dial.refused = False
        # Another incarnation at the same address is a process that restarted: its
        # old self is gone for good.
        for old in list(self._peers.values()):
            if old.info.id != peer.id and old.info.address == peer.address:
                effects.extend(self._remove(old, "restarted"))
        known = self._peers.get(peer.id)
        if known is None:
            self._peers[peer.id] = _Peer(peer, last_heard=now)
            self._dials.setdefault(peer.address, _Dial()).pending = False
            effects.append(MemberJoined(peer))
        else:
            known.connected = True
            known.probing = False
            effects.extend(self._heard(known, now))
        # Introduce ourselves at once rather than waiting for the next beat.
        effects.append(SendTo(peer, Heartbeat((self.local, *self.members()))))
        return effects

    def disconnected(self, member_id: str, now: float) -> list[Effect]:
        """The connection to a member closed: verify it is gone, and redial if not."""
        peer = self._peers.get(member_id)
        if peer is None or self._timers.left:
            return []
        peer.connected = False
        dial = self._dials.setdefault(peer.info.address, _Dial())
        dial.pending = False
        dial.next_at = now
        peer.reprobe = min(REPROBE_FIRST, self.heartbeat_interval)
        if peer.probing:
            return []
        peer.probing = True
        peer.next_probe = now + peer.reprobe
        return [Probe(peer.info)]

    def dial_failed(self, address: Address, now: float, *, refused: bool = False) -> list[Effect]:
        """A dial found nobody (or was refused by a member of another cluster or secret)."""
        dial = self._dials.get(address)
        if dial is None:
            return []
        dial.pending = False
        if refused:
            dial.refused = True
            dial.backoff = self.refused_backoff
        else:
            dial.backoff = min(self.max_backoff, max(self.heartbeat_interval, dial.backoff * 2))
        dial.next_at = now + dial.backoff
        return []

    def received(self, member_id: str, message: Message, now: float) -> list[Effect]:
        """A message from a connected member (any message counts as a sign of life)."""
        peer = self._peers.get(member_id)
        if peer is None or self._timers.left:
            return []
        if isinstance(message, Leave):
            return self._remove(peer, "left")
        effects = self._heard(peer, now)
        if isinstance(message, Heartbeat):
            effects.extend(self._gossip(message.members, now))
        return effects

    def discovered(self, member: MemberInfo, now: float) -> list[Effect]:
        """A member announced itself (multicast beacon): dial it if it is new."""
        if self._timers.left:
            return []
        return self._gossip((member,), now)

    def probe_result(self, member_id: str, alive: bool, now: float) -> list[Effect]:
        peer = self._peers.get(member_id)
        if peer is None or self._timers.left:
            return []
        peer.probing = False
        if not alive:
            return self._remove(peer, "crashed")
        # Something still accepts connections there (a GC pause, a busy event loop):
        # keep it as a suspect and let it prove itself with a heartbeat.
        return []

    def leave(self) -> list[Effect]:
        """Shut down gracefully: tell every member, then stop taking part."""
        if self._timers.left:
            return []
        effects: list[Effect] = [SendTo(peer.info, Leave()) for peer in self._peers.values() if peer.connected]
        self._timers.left = True
        return effects

    # -- internals ---------------------------------------------------------------------

    def _check(self, peer: _Peer, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if peer.state is MemberState.ALIVE:
            if now - peer.last_heard < self.drop_time:
                if not peer.connected and not peer.probing and now >= peer.next_probe:
                    # Its connection closed and a probe still found a listener: a process
                    # being killed closes its sockets one by one, so look again soon, then
                    # less and less often, rather than waiting the whole drop time.
                    peer.probing = True
                    peer.reprobe = min(2 * peer.reprobe, self.heartbeat_interval)
                    peer.next_probe = now + peer.reprobe
                    effects.append(Probe(peer.info))
                return effects
            peer.state = MemberState.SUSPECT
            peer.suspect_since = now
            peer.next_probe = now
            effects.append(MemberSuspected(peer.info))
        elif now - peer.suspect_since >= self.suspect_timeout:
            return self._remove(peer, "unresponsive")
        if not peer.probing and now >= peer.next_probe:
            # Verify before removing (Tomcat's TcpFailureDetector), and re-verify a
            # suspect every drop_time until it speaks again.
            peer.probing = True
            peer.next_probe = now + self.drop_time
            effects.append(Probe(peer.info))
        return effects

    def _heard(self, peer: _Peer, now: float) -> list[Effect]:
        peer.last_heard = now
        if peer.state is MemberState.SUSPECT:
            peer.state = MemberState.ALIVE
        return []

    def _gossip(self, members: Sequence[MemberInfo], now: float) -> list[Effect]:
        effects: list[Effect] = []
        for member in members:
            if (
                member.id == self.local.id
                or member.address == self.local.address  # our own previous incarnation
                or member.id in self._peers
                or member.id in self._departed
            ):
                continue
            dial = self._dials.setdefault(member.address, _Dial())
            if not dial.pending and not dial.refused and now >= dial.next_at:
                dial.pending = True
                dial.pending_since = now
                effects.append(Connect(member.address))
        return effects

    def _remove(self, peer: _Peer, reason: str) -> list[Effect]:
        del self._peers[peer.info.id]
        if reason in ("left", "restarted"):
            # Gone for good. A crashed or unresponsive one may be a partition that heals.
            self._departed[peer.info.id] = None
            if len(self._departed) > _MAX_DEPARTED:
                del self._departed[next(iter(self._departed))]
        effects: list[Effect] = [MemberLeft(peer.info, reason)]
        if peer.connected:
            effects.append(Disconnect(peer.info))
        if reason == "left" and peer.info.address not in self._timers.seeds:
            self._dials.pop(peer.info.address, None)  # a departed non-seed is not worth redialling
        return effects

    def _connected_to(self, address: Address) -> bool:
        return any(peer.info.address == address and peer.connected for peer in self._peers.values())
