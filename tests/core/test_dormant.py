"""Transferred sessions stay packed (``Dormant``) until something needs them.

A joining member receives every session in a state transfer; it keeps each one as the
bytes that came, and unpacks it only when a request, a delta, a listener or an
expiry needs it. These tests pin that the laziness is invisible: every way of
reaching a session sees exactly what an eager copy would have shown.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from replisession.core.listeners import DestroyReason
from replisession.core.messages import MemberInfo
from replisession.core.replication import Outgoing
from replisession.core.store import Dormant, SessionPolicy, SessionStore

from .replication_sim import Replica


def member(route: str, number: int) -> MemberInfo:
    return MemberInfo(route, "10.0.0.1", 4000 + number, f"{number:032x}")


A, B, C = member("a", 1), member("b", 2), member("c", 3)


def replicas(*infos: MemberInfo, **options: Any) -> list[Replica]:
    ids: Iterator[str] = (f"s{n}" for n in itertools.count(1))
    return [Replica(info, ids, **options) for info in infos]


def transfer(donor: Replica, joiner: Replica, now: float) -> list[Outgoing]:
    joiner.manager.request_transfer([donor.info], now)
    batches = list(donor.manager.stream(joiner.info, lambda: now))
    for batch in batches:
        assert joiner.receive(donor, batch, now) == []
    assert joiner.manager.transfer_done
    return batches


def filled(replica: Replica, count: int, now: float = 0.0) -> list[str]:
    ids = []
    for n in range(count):
        done = replica.request(None, lambda s, n=n: s.update(n=n, cart=[n]), now)
        assert done.session_id is not None
        ids.append(done.session_id)
    return ids


def quiet(replica: Replica) -> None:
    """No listeners: nothing needs a dormant copy unpacked to be told about it."""
    replica.store.listeners.clear()


def test_a_transferred_session_stays_packed_until_a_request_uses_it() -> None:
    a, j = replicas(A, C)
    ids = filled(a, 3, now=0.0)
    transfer(a, j, now=10.0)
    assert (len(j.store), j.store.dormant_count, j.recorder.events) == (3, 3, [])
    assert sorted(j.store.ids()) == sorted(ids)
    done = j.request(ids[1], lambda s: s["cart"].append("x"), 15.0)  # served here: unpacked now
    assert done.session_id == ids[1]
    assert j.store.dormant_count == 2
    assert j.recorder.events[0] == ("created", ids[1])  # listeners hear of the copy when it unpacks
    assert dict(j.store.peek(ids[1]) or {}) == {"n": 1, "cart": [1, "x"]}
    [delta] = done.messages
    assert delta.payload["sets"] == {"cart": a.store.serializer.dumps([1, "x"])}  # a nested change, seen


def test_an_unpacked_copy_keeps_the_donor_s_idle_time_age_and_owner() -> None:
    a, j = replicas(A, C, access_throttle=60.0)
    (sid,) = filled(a, 1, now=0.0)
    a.request(sid, lambda s: s.mark_accessed(), 40.0)  # touched at 40
    transfer(a, j, now=100.0)  # idle 60 s, 100 s old
    copy = j.store.dormant(sid)
    assert copy is not None
    assert (copy.last_accessed, copy.created_at) == (40.0, 0.0)
    session = j.store.peek(sid)
    assert session is not None
    assert (session.last_accessed, session.created_at, session._grace) == (40.0, 0.0, 60.0)
    # Owner A: J's own transfer to another member says so.
    (batch,) = j.manager.stream(B, lambda: 100.0)
    assert msgpack.unpackb(batch.payload["sessions"][0][4])[0] == A.id


def test_a_delta_for_a_packed_session_unpacks_it_and_applies_on_top() -> None:
    a, j = replicas(A, C)
    (sid,) = filled(a, 1)
    transfer(a, j, now=1.0)
    for message in a.request(sid, lambda s: (s.pop("n"), s.update(k=2)), 2.0).messages:
        j.receive(a, message, 2.0)
    assert j.store.dormant_count == 0
    assert j.sessions() == a.sessions() == {sid: {"cart": [0], "k": 2}}


def test_a_newer_transfer_of_a_held_session_merges_per_key() -> None:
    a, j = replicas(A, C)
    (sid,) = filled(a, 1)
    transfer(a, j, now=1.0)  # packed here
    a.request(sid, lambda s: s.update(n=5), 2.0)  # J misses this delta...
    transfer(a, j, now=3.0)  # ...and a second transfer (a healed partition) brings it
    assert j.sessions() == a.sessions() == {sid: {"n": 5, "cart": [0]}}


def test_packed_copies_are_passed_on_still_packed() -> None:
    a, j, k = replicas(A, C, B)
    filled(a, 4)
    first = transfer(a, j, now=1.0)
    second = transfer(j, k, now=1.0)
    assert j.store.dormant_count == 4  # J never unpacked what it passed on
    assert [e[4] for b in second for e in b.payload["sessions"]] == [e[4] for b in first for e in b.payload["sessions"]]
    assert k.sessions() == a.sessions()


def test_an_invalidation_drops_a_packed_copy_and_buries_its_id() -> None:
    a, j = replicas(A, C)
    quiet(j)
    (sid, other) = filled(a, 2)
    transfer(a, j, now=1.0)
    for message in a.request(sid, lambda s: s.invalidate(), 2.0).messages:
        j.receive(a, message, 2.0)
    assert (sid in j.store, j.manager.is_dead(sid), j.store.dormant_count) == (False, True, 1)
    assert j.store.load(sid, 3.0) is None
    assert other in j.store


def test_a_rotation_moves_a_packed_copy_to_the_new_id() -> None:
    a, j = replicas(A, C)
    quiet(j)
    (sid,) = filled(a, 1)
    transfer(a, j, now=1.0)
    done = a.request(sid, lambda s: s.rotate_id(), 2.0)
    for message in done.messages:
        j.receive(a, message, 2.0)
    assert done.session_id is not None
    assert j.store.ids() == [done.session_id]
    assert j.store.load(sid, 3.0) is None
    assert dict(j.store.load(done.session_id, 3.0) or {}) == {"n": 0, "cart": [0]}


@pytest.mark.parametrize("listening", [False, True])
def test_a_packed_copy_expires_on_the_sweep(listening: bool) -> None:
    a, j = replicas(A, C, access_throttle=10.0, policy=SessionPolicy(max_inactive_interval=100.0))
    if not listening:
        quiet(j)
    (sid, kept) = filled(a, 2, now=0.0)
    a.request(kept, lambda s: s.mark_accessed(), 50.0)
    transfer(a, j, now=60.0)
    assert j.store.sweep(109.0) == 0  # idle 109 < 100 + the replica's grace (10)
    assert j.store.sweep(110.0) == 1
    assert (sid in j.store, kept in j.store) == (False, True)
    expected = [
        ("created", sid),
        ("added", sid, "n", 0),
        ("added", sid, "cart", [0]),
        ("destroyed", sid, DestroyReason.EXPIRED, {"n": 0, "cart": [0]}),
    ]
    assert [e for e in j.recorder.events if e[1] == sid] == (expected if listening else [])


def test_a_packed_copy_that_cannot_be_read_is_reported_and_serves_as_absent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, j = replicas(A, C)
    (good,) = filled(a, 1)
    broken = ["s99", 0.0, 0.0, None, msgpack.packb([A.id, [1, A.id], [0, ""], b"\xc1", {}])]
    j.receive(a, Outgoing("sessions", {"sessions": [broken], "last": False, "dead": [], "aliases": []}), 1.0)
    transfer(a, j, now=1.0)
    with caplog.at_level(logging.ERROR, logger="replisession.replication"):
        assert j.store.load("s99", 2.0) is None
    assert "a transferred copy of session s99 cannot be read" in caplog.text
    assert "s99" not in j.store
    assert j.sessions() == a.sessions() == {good: {"n": 0, "cart": [0]}}


def test_a_packed_copy_is_held_only_under_an_id_not_held_yet() -> None:
    store = SessionStore()
    store.replica("s1", 0.0)
    with pytest.raises(ValueError, match="already held"):
        store.hold("s1", Dormant(0.0, 0.0, None, 0.0, b""))


def test_a_transfer_reads_sessions_without_marking_them_read_by_a_request() -> None:
    a, j = replicas(A, C)
    (sid,) = filled(a, 1)
    session = a.store.load(sid, 1.0)  # a request is using it while the transfer runs
    assert session is not None
    assert session._read == {}
    transfer(a, j, now=1.0)
    assert (session._read, session.accessed) == ({}, False)  # no snapshots: the request's changes stay its own


def test_a_packed_copy_counts_as_another_member_s_session() -> None:
    a, j = replicas(A, C)
    (sid,) = filled(a, 1)
    transfer(a, j, now=1.0)
    assert (a.manager.owner_of(sid), j.manager.owner_of(sid), j.manager.owner_of("unknown")) == (A.id, "", None)
    j.store.peek(sid)  # unpacked: the owner it names is known now
    assert j.manager.owner_of(sid) == A.id
