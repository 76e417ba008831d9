"""BackupManager: promotion after the primary's death when a holder lacks its copy."""

from __future__ import annotations

from typing import Any

from .backup_sim import Cluster, assert_placed, put


def test_a_dead_primary_s_session_is_restored_when_its_first_backup_lost_the_full_copy() -> None:
    cluster = Cluster(4, backups=2)
    a = next(iter(cluster.members.values()))

    def lose(source: Any, message: Any, target: Any) -> bool:
        # The full copy for the session's first backup fails to arrive (the node would send it
        # again on its next tick, or with the next write; the primary dies first), and so does
        # that backup's ask for it (it is named without its copy).
        if source is not a or message.kind != "sessions":
            return False
        return bool(target.id == a.manager._placed[message.payload["sessions"][0][0]].holders[0])

    cluster.lose, cluster.lose_asks = lose, True
    session_id = cluster.request(a, None, put(n=1))
    cluster.lose, cluster.lose_asks = None, False
    assert session_id is not None
    assert len(cluster.copies(session_id)) == 2  # the primary and its second backup
    cluster.crash(a)  # the primary dies: its second backup holds the only other copy
    # The first backup holds no copy and the second defers to it: the first asks the others
    # for the copy, and is promoted when it arrives (1 + k copies again, without a request).
    assert_placed(cluster, {session_id: {"n": 1}})
