"""BackupManager: a session ended on one side of a partition, after the partition heals
(the DeltaManager's transfer carries ended ids, and remembers them for two of the session's own
idle timeouts; a BackupManager exchanges nothing on a rejoin, and its backups keep no stamps)."""

from __future__ import annotations

from typing import Any

from .backup_sim import NOW, Cluster, Replica

DAY = 86400.0


def _ended_while_split() -> tuple[Cluster, Replica, Replica, Replica, str]:
    cluster = Cluster(3, backups=2)
    a, b, c = cluster.members.values()
    for replica in (a, b, c):
        replica.store.listeners.clear()  # no session listeners, as a node has by default

    def login(session: Any) -> None:
        session["x"] = 1
        session.max_inactive_interval = DAY  # "remember me": a day, longer than the policy's 1800 s

    session_id = cluster.request(a, None, login)
    assert session_id is not None
    assert set(cluster.copies(session_id)) == {a.info.id, b.info.id, c.info.id}
    cluster.partition([c])  # c is cut off: it promotes itself on its side
    cluster.request(a, session_id, lambda s: s.invalidate())  # the user logs out on a; b is told
    cluster.now = NOW + 4000  # past the policy's horizon (2 * 1800 + 60), well within the session's
    for replica in cluster.members.values():
        replica.manager.tick(cluster.now)
        replica.store.sweep(cluster.now)
    assert cluster.copies(session_id) == {c.info.id: {"x": 1}}  # c's copy is valid a day
    cluster.heal()
    return cluster, a, b, c, session_id


def test_a_backup_remembers_an_end_for_the_session_s_own_timeout() -> None:
    cluster, _a, b, _c, session_id = _ended_while_split()
    # b was told of the end, but buried it for the policy's horizon only (its packed copy kept no
    # stamps, so _bury found no timeout of the session's own): it takes c's copy back at the heal.
    assert b.info.id not in cluster.copies(session_id)


def test_a_session_ended_on_one_side_of_a_partition_stays_ended_after_the_heal() -> None:
    cluster, _a, _b, _c, session_id = _ended_while_split()
    # c is told at the heal: what ended or was rotated on the other side comes with the join.
    assert cluster.copies(session_id) == {}
