"""BackupManager: a member that dies half-way through telling the others something.

An end, or a takeover (a delta, then a placement), goes out one message per target; the
sender can die between two of them. The members that got it repair what the others
missed when they learn of the death, and only then: a holder passing every end on at
once cost k * (k - 1) messages more per end or expiry, sticky serving included.
"""

from __future__ import annotations

import pytest

from replisession.core.backup import END_RELAY_WINDOW
from replisession.core.placement import place

from .backup_sim import Cluster, Replica, put


def test_an_invalidation_costs_one_message_per_other_member_with_two_backups() -> None:
    cluster = Cluster(4, backups=2)
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(n=0))
    start = len(cluster.messages)
    cluster.request(a, session_id, lambda session: session.invalidate())
    sent = cluster.messages[start:]
    assert [m for m in sent if m[0] != a.info.id] == []  # no backup passes the end on
    assert len(sent) == 3


def test_a_backup_passes_the_end_on_when_the_primary_dies_before_telling_every_holder() -> None:
    cluster = Cluster(3, backups=2)
    a, b, c = cluster.members.values()
    session_id = cluster.request(a, None, put(n=0))
    assert sorted(a.manager._placed[session_id].holders) == sorted([b.info.id, c.info.id])
    cluster.lose = lambda source, message, target: source is a and target.id == c.info.id
    cluster.request(a, session_id, lambda session: session.invalidate())
    cluster.lose = None
    assert session_id in c.store
    assert session_id not in b.store
    cluster.crash(a)
    assert session_id not in c.store
    assert c.manager.is_dead(session_id)


def _roles(cluster: Cluster) -> tuple[Replica, Replica, Replica, str]:
    """A, B, C and a session: A owns it with backup C, and B would place it on itself and C."""
    members = list(cluster.members.values())
    a = members[0]
    for _ in range(50):
        session_id = cluster.request(a, None, put(n=0))
        assert session_id is not None
        (holder,) = a.manager._placed[session_id].holders
        c = cluster.members[holder]
        b = next(r for r in members if r not in (a, c))
        if place(session_id, b.info, [a.info, c.info], 1) == (c.info.id,):
            return a, b, c, session_id
    pytest.fail("no session placed as the scenario needs")


def test_a_session_keeps_a_primary_when_a_member_taking_it_over_dies_mid_send() -> None:
    """A owns s with backup C; B (no copy) serves s and places it on itself and C: its
    delta reaches C and its placement reaches A (which drops its copy), not C; then B
    dies. C sends its copy to A, with the placement C follows, which arrives after A's
    rebalance (the real node rebalances on a thread of its own right after the death)."""
    cluster = Cluster(3, backups=1)
    a, b, c, session_id = _roles(cluster)
    cluster.lose = lambda source, message, target: (
        source is b and message.kind == "placement" and target.id == c.info.id
    )
    cluster.request(b, session_id, put(n=1))
    cluster.lose = None
    assert session_id not in a.manager._placed
    assert session_id not in a.store
    assert c.manager._placed[session_id].owner == a.info.id
    del cluster.members[b.info.id]
    others = [a.info, c.info]
    cluster.deliver(a, a.manager.member_left(b.info, others, cluster.now))
    cluster.deliver(a, a.manager.rebalance(a.store.ids(), cluster.now))
    late = c.manager.member_left(b.info, others, cluster.now)
    cluster.deliver(c, c.manager.rebalance(c.store.ids(), cluster.now))
    cluster.deliver(c, late)
    owners = [r for r in (a, c) if (p := r.manager._placed.get(session_id)) is not None and p.owner == r.info.id]
    assert owners == [a]
    assert cluster.copies(session_id) == {a.info.id: {"n": 1}, c.info.id: {"n": 1}}


def test_a_claimant_write_whose_placement_never_comes_is_forgotten_after_the_window() -> None:
    # The same start as above, and B lives on: C keeps the claim while a death of B could
    # still call for its copy to go to A, then forgets it (it would cost full copies later).
    cluster = Cluster(3, backups=1)
    _, b, c, session_id = _roles(cluster)
    cluster.lose = lambda source, message, target: source is b and message.kind in ("placement", "placements")
    cluster.request(b, session_id, put(n=1))
    cluster.lose = None
    assert c.manager._claimed[session_id][0] == b.info.id
    c.manager.tick(cluster.now + END_RELAY_WINDOW - 1)
    assert session_id in c.manager._claimed
    c.manager.tick(cluster.now + END_RELAY_WINDOW)
    assert session_id not in c.manager._claimed
