"""BackupManager: a takeover elsewhere while a request here rotates the session's id
(a login on one member while a parallel request with the old cookie lands on another)."""

from __future__ import annotations

import itertools

import pytest

from .backup_sim import NOW, Cluster, Replica, put, session_and_taker


def _login_during_takeover() -> tuple[Cluster, Replica, str, str, str]:
    """a rotates old -> new in a request; meanwhile c (not a's backup) serves old and writes y.
    Returns the cluster, a, old, new, and a's backup's id."""
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    old = cluster.request(a, None, put(n=0))
    assert old is not None
    (backup,) = a.manager._placed[old].holders
    c = next(r for r in cluster.members.values() if r is not a and r.info.id != backup)
    login = a.begin(old, NOW)
    new = login.rotate_id()  # a login on a: old -> new, the request still running
    assert new is not None
    login["user"] = "u"
    cluster.request(c, old, put(y=1))  # c fetches old, serves it, writes y and places it
    cluster.deliver(a, a.end(login, NOW + 1, old).messages)
    return cluster, a, old, new, backup


def test_the_rotated_away_id_does_not_stay_a_live_session_on_the_member_that_took_it_over() -> None:
    cluster, _a, old, new, _backup = _login_during_takeover()
    # c's placement of old reaches a mid-rotation: a follows it (not "an id that lost a concurrent
    # rotation": the rotation is a's own, unreleased) and, its request still running, asks c for its
    # copy of old, which brings y. a's release re-places new, and its rotation reaches c (a holder of
    # the placement a followed), which drops old. Before, a dropped c's placement: old stayed a live
    # session on c (the login's fixation protection void), and y never reached new.
    assert cluster.copies(old) == {}, {r.info.route: r.manager.owner_of(old) for r in cluster.members.values()}
    copies = cluster.copies(new)
    assert list(copies.values()) == [{"n": 0, "y": 1, "user": "u"}] * 2, copies


def test_a_fetch_during_a_local_rotation_leaves_no_orphan_copy_of_the_new_id() -> None:
    cluster, a, _old, new, backup = _login_during_takeover()
    # c asked for old while a's request was rotating it: a gives it to nobody (its new id is the
    # browser's secret, its contents unreleased). Before, a answered with its in-request copy under
    # new, with no placement and no rotation edge: c kept a copy of new that no placement named.
    assert set(cluster.copies(new)) == {a.info.id, backup}


def test_an_orphan_copy_of_the_new_id_does_not_become_a_second_primary_at_the_next_rebalance() -> None:
    cluster, a, _old, new, _backup = _login_during_takeover()
    cluster.join()  # a rebalance: before, c claimed an unplaced copy of new there (_should_own)
    cluster.request(a, new, put(z=1))  # the user's next write, on a
    owners = {r.info.route: r.manager.owner_of(new) for r in cluster.members.values() if new in r.store}
    assert set(owners.values()) == {a.info.id}, owners  # a and c each primary; c's copy never gets z


def _orders() -> list[str]:
    """Every order of c's fetch (F), c's request beginning (B) and ending with its write (E)
    against a's rotation in its request (R) and that request's end (L)."""
    orders = {"".join(order) for order in itertools.permutations("FBERL")}
    return sorted(o for o in orders if o.index("F") < o.index("B") < o.index("E") and o.index("R") < o.index("L"))


@pytest.mark.parametrize("order", _orders())
@pytest.mark.parametrize("taker", ["other", "backup"])
def test_a_login_on_one_member_and_a_request_with_the_old_cookie_on_another_converge_in_any_order(
    taker: str, order: str
) -> None:
    cluster = Cluster(3, backups=1)
    a, old, _backup, c = session_and_taker(cluster, taker)
    login = a.begin(old, NOW)
    request, served = None, False
    for step in order:
        if step == "F":
            if old not in c.store:  # the node's fetch, for a copy it lacks
                others = tuple(r.info for r in cluster.members.values() if r is not c)
                cluster.deliver(c, [c.manager.fetch([old], others)])
        elif step == "B":
            request = c.begin(old, NOW)
            served = request.id == old  # else a fresh session: old was rotated away already
        elif step == "E":
            assert request is not None
            request["y"] = 1
            cluster.deliver(c, c.end(request, NOW + 1, old if served else None).messages)
        elif step == "R":
            new = login.rotate_id()
            login["user"] = "u"
        elif step == "L":
            cluster.deliver(a, a.end(login, NOW + 1, old).messages)
    assert cluster.copies(old) == {}  # the login's old id opens nothing anywhere
    expected = {"n": 0, "user": "u", **({"y": 1} if served else {})}
    copies = cluster.copies(new)
    owners = {r.info.id[-1]: r.manager.owner_of(new) for r in cluster.members.values() if new in r.store}
    assert len(copies) >= 2, (copies, owners)
    assert all(copy == expected for copy in copies.values()), (copies, owners)
    assert len(set(owners.values())) == 1, owners
