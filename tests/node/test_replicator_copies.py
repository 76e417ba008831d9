"""The node's part of the BackupManager's redundancy: a full copy whose send was not
confirmed (a timeout, a lost connection) is sent again by the timer while that member is
still in the cluster, even if the session is never used again."""

from __future__ import annotations

import concurrent.futures

from replisession.core.channel import DeliveryStatus, SendOutcome
from replisession.core.messages import SendMode
from replisession.core.store import SessionStore
from replisession.node.replicator import Replicator

from .fake_member import B, FakeMember, outcome, replicator_of


class Recording(FakeMember):
    """Member A with B alive; the test ends each send."""

    def copies(self) -> list[tuple[set[str], SendMode, concurrent.futures.Future[SendOutcome]]]:
        """The full-copy sends so far, as (session ids, mode, future), and forget them all."""
        found = [({e[0] for e in p["sessions"]}, m, f) for k, p, m, _, f in self.sent if k == "sessions"]
        self.sent.clear()
        return found


def replicator() -> tuple[Replicator, Recording, SessionStore]:
    member = Recording()
    node, store = replicator_of(member, "backup")
    node.member_joined(B)  # re-places nothing (no session yet), on a thread of its own
    member.sent.clear()
    return node, member, store


def new_session(store: SessionStore) -> str:
    session = store.new_session(100.0)
    session["cart"] = ["book"]
    store.release(session, 100.0)
    assert session.id is not None
    return session.id


def test_a_copy_that_timed_out_is_sent_again_by_the_timer_without_another_request() -> None:
    node, member, store = replicator()
    session_id = new_session(store)
    [(ids, mode, future)] = member.copies()
    assert ids == {session_id}
    assert mode is SendMode.SYNC
    future.set_result(outcome(DeliveryStatus.TIMEOUT))

    node.tick()
    [(ids, mode, future)] = member.copies()
    assert ids == {session_id}
    assert mode is SendMode.ACK
    future.set_result(outcome(DeliveryStatus.OK))
    node.tick()  # confirmed now: nothing more
    assert member.copies() == []


def test_a_copy_lost_with_its_connection_is_sent_again_and_again_until_confirmed() -> None:
    node, member, store = replicator()
    session_id = new_session(store)
    [(_, _, future)] = member.copies()
    future.set_result(outcome(DeliveryStatus.GONE))  # the connection dropped; B is still a member
    for _ in range(2):
        node.tick()
        [(ids, _, future)] = member.copies()
        assert ids == {session_id}
        future.set_result(outcome(DeliveryStatus.TIMEOUT))


def test_nothing_is_sent_again_to_a_member_that_left_or_for_a_confirmed_copy() -> None:
    node, member, store = replicator()
    new_session(store)
    [(_, _, future)] = member.copies()
    future.set_result(outcome(DeliveryStatus.OK))
    node.tick()
    assert member.copies() == []

    new_session(store)
    [(_, _, future)] = member.copies()
    future.set_result(outcome(DeliveryStatus.TIMEOUT))
    member.live = []  # B left: the re-placement after its departure covers the session
    node.tick()
    assert member.copies() == []


def test_a_placement_that_was_not_confirmed_is_sent_again_with_its_copy() -> None:
    node, member, store = replicator()
    session_id = new_session(store)
    sent = {kind: future for kind, _, _, _, future in member.sent}
    assert set(sent) == {"sessions", "placement"}
    sent["sessions"].set_result(outcome(DeliveryStatus.OK))
    sent["placement"].set_result(outcome(DeliveryStatus.TIMEOUT))  # the copy landed, its placement did not
    member.sent.clear()
    node.tick()
    again = [(kind, payload) for kind, payload, _, _, _ in member.sent]
    assert [kind for kind, _ in again] == ["sessions", "placements"]  # the copy first, then where it lives
    assert {entry[0] for entry in again[0][1]["sessions"]} == {session_id}
    assert [body["id"] for body in again[1][1]["placements"]] == [session_id]
