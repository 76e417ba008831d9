"""BackupManager: two members that hold no copy serve one session at the same time (no
stickiness: two tabs, two requests), each fetching it and taking it over. Each placement
reaches the old holders, which follow the newer one; the member whose placement lost
must hear of the winner and hand its copy over, or both stay primaries and each keeps a
write the other lacks."""

from __future__ import annotations

import pytest

from .backup_sim import NOW, Cluster, put
from .test_backup import interleavings


def _two_takeovers(size: int) -> tuple[Cluster, str, list[list[object]]]:
    cluster = Cluster(size, backups=1)
    members = list(cluster.members.values())
    a = members[0]
    sid = cluster.request(a, None, put(n=0))
    assert sid is not None
    (b_id,) = a.manager._placed[sid].holders
    c, d = [r for r in members if r.info.id not in (a.info.id, b_id)][:2]
    for taker in (c, d):  # the node's fetch: neither holds a copy
        cluster.deliver(taker, [taker.manager.fetch([sid], tuple(m.info for m in members if m is not taker))])
    on_c, on_d = c.begin(sid, NOW), d.begin(sid, NOW)
    on_c["c"], on_d["d"] = 1, 1
    from_c = [(c, m) for m in c.end(on_c, NOW + 1, sid).messages]
    from_d = [(d, m) for m in d.end(on_d, NOW + 1, sid).messages]
    return cluster, sid, interleavings(from_c, from_d)


@pytest.mark.parametrize("size", [4, 5])
def test_two_members_taking_a_session_over_at_once_leave_one_primary_and_both_writes(size: int) -> None:
    for order in range(len(_two_takeovers(size)[2])):
        cluster, sid, merges = _two_takeovers(size)
        for sender, message in merges[order]:
            cluster.deliver(sender, [message])  # type: ignore[list-item]
        owners = {r.info.route: r.manager.owner_of(sid) for r in cluster.members.values() if sid in r.store}
        assert len(set(owners.values())) == 1, (order, owners)
        copies = cluster.copies(sid)
        assert len(copies) == 2, (order, copies)
        assert all(copy == {"n": 0, "c": 1, "d": 1} for copy in copies.values()), (order, copies)
