"""BackupManager: a full copy lost to a failed send (the backup stays a member) is sent again.

Before, nothing re-sent it: the backup ignored every later delta (it had no copy to apply
it to), so the session kept one copy fewer until that backup left and rejoined; a
rotation's delta even made it a partial copy (the delta's keys only) that later deltas
then kept up to date. Now a holder without a copy asks the sender (``missing``) and the
primary answers with the copy and the placement, only to a member it counts as a backup.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replisession.core.backup import MISSING_RETRY
from replisession.core.replication import Outgoing
from replisession.errors import RemoteProtocolError

from .backup_sim import NOW, Cluster, Replica, assert_placed, put


def lose_copies_from(sender: Replica, *kinds: str) -> Any:
    return lambda source, message, target: source is sender and message.kind in kinds


def backup_of(cluster: Cluster, primary: Replica, session_id: str) -> Replica:
    (holder,) = primary.manager._placed[session_id].holders
    return cluster.members[holder]


def lost_copy(*kinds: str, **values: Any) -> tuple[Cluster, Replica, str]:
    """A cluster of 3 (k=1) where the first member's new session lost its ``kinds`` messages."""
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    cluster.lose = lose_copies_from(a, *kinds)
    cluster.lose_asks = True  # a holder named without its copy asks at once: that fails too
    session_id = cluster.request(a, None, put(**values))
    cluster.lose, cluster.lose_asks = None, False
    assert session_id is not None
    return cluster, a, session_id


def test_a_backup_named_without_its_copy_asks_for_it_at_once() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    cluster.lose = lambda source, message, target: source is a and message.kind == "sessions"
    session_id = cluster.request(a, None, put(n=1))
    assert session_id is not None
    assert_placed(cluster, {session_id: {"n": 1}})  # the placement came without the copy: asked for
    assert [kind for _, kind, _ in cluster.messages[-3:]] == ["missing", "sessions", "placements"]


def test_a_backup_whose_full_copy_was_lost_gets_it_with_the_next_write() -> None:
    cluster, a, session_id = lost_copy("sessions", n=1, keep="me")
    assert len(cluster.copies(session_id)) == 1  # the loss
    cluster.now += MISSING_RETRY  # the ask the placement made is not repeated before this
    cluster.request(a, session_id, put(n=2))
    assert_placed(cluster, {session_id: {"n": 2, "keep": "me"}})
    assert [kind for _, kind, _ in cluster.messages[-4:]] == ["delta", "missing", "sessions", "placements"]


def test_a_lost_copy_and_placement_are_both_sent_again() -> None:
    cluster, a, session_id = lost_copy("sessions", "placement", n=1, keep="me")
    backup = backup_of(cluster, a, session_id)
    assert session_id not in backup.manager._placed
    cluster.request(a, session_id, put(n=2))
    assert_placed(cluster, {session_id: {"n": 2, "keep": "me"}})
    assert backup.manager._placed[session_id] == a.manager._placed[session_id]
    assert backup.store.dormant(session_id) is not None  # packed, as a backup's copy is


def test_a_rotation_never_makes_a_partial_copy_of_a_lost_one() -> None:
    cluster, a, old = lost_copy("sessions", "placement", n=1, keep="me")
    new = cluster.request(a, old, lambda s: (s.rotate_id(), s.update(n=2)))
    assert new is not None
    assert new != old
    assert_placed(cluster, {new: {"n": 2, "keep": "me"}})  # before: the backup held {"n": 2} only


def test_an_access_notice_for_a_lost_copy_asks_for_it_too() -> None:
    cluster, a, session_id = lost_copy("sessions", n=1)
    backup = backup_of(cluster, a, session_id)
    cluster.now += MISSING_RETRY
    notice = {"id": session_id, "owner": a.info.id, "stamp": [50, a.info.id]}
    (ask,) = backup.manager.receive(a.info, "access", notice, cluster.now)
    assert (ask.kind, ask.payload, ask.targets) == ("missing", {"ids": [session_id]}, (a.info,))
    cluster.deliver(backup, [ask])
    assert_placed(cluster, {session_id: {"n": 1}})


def test_only_a_member_the_primary_counts_as_a_backup_gets_a_copy() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(n=1))
    assert session_id is not None
    backup = backup_of(cluster, a, session_id)
    outsider = next(r for r in cluster.members.values() if r is not a and r is not backup)
    assert a.manager.receive(outsider.info, "missing", {"ids": [session_id]}, NOW) == []
    assert a.manager.receive(backup.info, "missing", {"ids": ["unknown"]}, NOW) == []
    assert backup.manager.receive(a.info, "missing", {"ids": [session_id]}, NOW) == []  # not its primary
    again = a.manager.receive(backup.info, "missing", {"ids": [session_id]}, NOW)
    assert [(m.kind, m.targets) for m in again] == [("sessions", (backup.info,)), ("placements", (backup.info,))]


@pytest.mark.parametrize(
    "payload", [{"ids": "s1"}, {"ids": [1]}, {"ids": ["s1"] * 1001}, {"ids": ["s1"], "more": 1}, ["s1"]]
)
def test_a_malformed_missing_request_is_refused(payload: Any) -> None:
    cluster = Cluster(2, backups=1)
    a, b = cluster.members.values()
    with pytest.raises(RemoteProtocolError):
        a.manager.receive(b.info, "missing", payload, NOW)


def test_a_backup_asks_once_per_retry_interval_and_again_after_it() -> None:
    cluster, a, session_id = lost_copy("sessions", n=1)
    backup = backup_of(cluster, a, session_id)
    cluster.now += MISSING_RETRY
    (delta,) = [m for m in a.request(session_id, put(n=2), cluster.now).messages if m.kind == "delta"]

    def asks() -> list[Outgoing]:
        return backup.manager.receive(a.info, "delta", delta.payload, cluster.now)

    assert [m.kind for m in asks()] == ["missing"]  # and that ask is lost
    assert asks() == []  # within MISSING_RETRY: a burst of writes asks once
    cluster.now += MISSING_RETRY
    backup.manager.tick(cluster.now)
    (ask,) = asks()
    cluster.deliver(backup, [ask])
    assert_placed(cluster, {session_id: {"n": 2}})


# -- random losses -------------------------------------------------------------------------------

STEPS = st.lists(
    st.tuples(st.sampled_from(["new", "write", "write", "join"]), st.integers(0, 50), st.integers(0, 50)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, backups=st.integers(1, 2), seed=st.integers(0, 1000), loss=st.sampled_from([0.2, 0.5, 0.9]))
def test_after_lost_copies_and_a_write_every_session_has_1_plus_k_equal_copies(
    steps: list[tuple[str, int, int]], backups: int, seed: int, loss: float
) -> None:
    """Non-sticky requests and joins while sends of full copies (``sessions``, each target on
    its own) fail at random; a fetch's answer is never lost (the request would start a fresh
    session). Then one write to every session on its primary repairs every lost copy, and
    the copies survive the death of k members."""
    rng = random.Random(seed)
    cluster = Cluster(backups + 2, backups=backups)
    cluster.lose = lambda source, message, target: message.kind == "sessions" and rng.random() < loss
    expected: dict[str, dict[str, Any]] = {}
    for n, (kind, pick, other) in enumerate(steps):
        replicas = list(cluster.members.values())
        if kind == "join":
            cluster.join()
        elif kind == "new" or not expected:
            session_id = cluster.request(replicas[pick % len(replicas)], None, put(a=n))
            assert session_id is not None
            expected[session_id] = {"a": n}
        else:
            session_id = sorted(expected)[other % len(expected)]
            cluster.request(replicas[pick % len(replicas)], session_id, put(b=n))
            expected[session_id]["b"] = n
    cluster.lose = None
    for session_id, contents in expected.items():
        (primary,) = [r for r in cluster.members.values() if r.store.live(session_id) is not None]
        cluster.request(primary, session_id, put(c=1))
        contents["c"] = 1
    assert_placed(cluster, expected)
    cluster.crash(*rng.sample(list(cluster.members.values()), backups))
    assert_placed(cluster, expected)
