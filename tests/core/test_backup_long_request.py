"""BackupManager: a request on a former primary that is still running when another
member takes the session over (non-sticky requests: a long download on one member while
the user's next click lands on another)."""

from __future__ import annotations

from replisession.core.placement import place

from .backup_sim import NOW, Cluster, Replica, put


def _pick(cluster: Cluster, owner: Replica, want: object) -> tuple[str, Replica, Replica]:
    """A session created on ``owner`` and a member to take it over, chosen by ``want``
    (``want(session_id, backup, taker, taker's backup)`` -> bool)."""
    infos = [r.info for r in cluster.members.values()]
    for _ in range(200):
        session_id = cluster.request(owner, None, put(n=0))
        assert session_id is not None
        (backup_id,) = owner.manager._placed[session_id].holders
        for taker in cluster.members.values():
            if taker is owner:
                continue
            (taker_backup,) = place(session_id, taker.info, infos, 1)
            if want(session_id, backup_id, taker.info.id, taker_backup):  # type: ignore[operator]
                return session_id, cluster.members[backup_id], taker
    raise AssertionError("no session fits")


def test_a_former_primary_s_expiry_does_not_end_the_session_its_new_primary_is_serving() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    # A session whose new primary (the taker) would not back up on a.
    session_id, _, c = _pick(cluster, a, lambda s, b, t, tb: tb != a.info.id)
    long = a.begin(session_id, NOW)  # a long request on a that never touches the session (a download)
    cluster.request(c, session_id, put(n=1))  # the user's next click lands on c: c is the primary now
    a.end(long, NOW + 5, session_id)  # nothing changed, not accessed: no message
    cluster.now = NOW + 1000
    cluster.request(c, session_id, put(n=2))  # the user keeps using the session on c
    assert cluster.copies(session_id)[c.info.id] == {"n": 2}
    cluster.now = NOW + 1801  # a's copy (last used at NOW) is past the 1800 s idle timeout; c's is not
    cluster.deliver(a, a.sweep(cluster.now))
    copies = cluster.copies(session_id)
    assert copies.get(c.info.id) == {"n": 2}, copies  # ended on c by a's expiry: the session is gone


def test_a_write_made_elsewhere_during_a_request_on_the_former_primary_is_not_lost() -> None:
    cluster = Cluster(4, backups=1, hosts=2)  # two hosts with two workers each
    a = next(iter(cluster.members.values()))
    # The taker's backup is neither a nor a's backup, and a's backup is not the taker (the taker
    # shares a host with a's backup, so its own backup is on a's host: a's neighbour).
    session_id, _b, c = _pick(cluster, a, lambda s, b, t, tb: t != b and tb not in (a.info.id, b))
    long = a.begin(session_id, NOW)  # a long request on a
    cluster.request(c, session_id, put(y=2))  # meanwhile c serves the session and writes y (acknowledged)
    long["x"] = 1
    cluster.deliver(a, a.end(long, NOW + 5, session_id).messages)  # a's request ends: a writes x
    copies = cluster.copies(session_id)
    assert len(copies) == 2
    assert all(copy == {"n": 0, "x": 1, "y": 2} for copy in copies.values()), copies


def test_a_copy_fetched_by_a_request_that_never_used_it_does_not_end_the_session_when_it_expires() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id, _, c = _pick(cluster, a, lambda s, b, t, tb: t != b)  # c holds no copy
    cluster.request(c, session_id, lambda s: None)  # one request lands on c and never touches the session
    assert c.store.live(session_id) is not None  # fetched and loaded; c is not its primary
    cluster.now = NOW + 1000
    cluster.request(a, session_id, put(n=1))  # the user goes on using it on a, its primary
    cluster.now = NOW + 1900  # c's copy is idle past the timeout and its grace (60 s), a's is not
    cluster.deliver(c, c.sweep(cluster.now))
    copies = cluster.copies(session_id)
    assert copies.get(a.info.id) == {"n": 1}, copies  # c's expiry ended it on a and its backup


def test_the_primary_s_expiry_never_ends_a_session_a_long_request_uses_on_another_member() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id, _, c = _pick(cluster, a, lambda s, b, t, tb: t != b)  # c holds no copy
    others = tuple(r.info for r in cluster.members.values() if r is not c)
    cluster.deliver(c, [c.manager.fetch([session_id], others)])  # the node's fetch
    upload = c.begin(session_id, NOW)  # the balancer moved the user: a long upload on c
    for now in (NOW + 900, NOW + 1700):  # c's timer: the session is in use here
        cluster.now = now
        cluster.deliver(c, c.sweep(now))
    assert a.manager.owner_of(session_id) == a.info.id  # kept alive, not taken over
    cluster.now = NOW + 1801  # a's copy was last used at NOW + 1700 (c's notice): not idle
    cluster.deliver(a, a.sweep(cluster.now))
    upload["done"] = True  # the upload ends, past the idle timeout, and writes
    cluster.deliver(c, c.end(upload, cluster.now, session_id).messages)
    copies = cluster.copies(session_id)
    assert list(copies.values()) == [{"n": 0, "done": True}] * 2, copies


def test_a_fetched_copy_that_expired_leaves_no_end_behind_to_refuse_a_later_placement() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id, b, c = _pick(cluster, a, lambda s, b, t, tb: t != b)  # c holds no copy
    cluster.request(c, session_id, lambda s: None)  # fetched and loaded on c, never used
    cluster.now = NOW + 1000
    cluster.request(a, session_id, put(n=1))  # the user goes on using it on a, its primary
    cluster.now = NOW + 1900
    cluster.deliver(c, c.sweep(cluster.now))  # c's copy expires quietly: c is not the primary
    assert not c.manager.is_dead(session_id)
    cluster.crash(b)  # a's backup dies: c, the only other member, is placed the copy
    assert cluster.copies(session_id) == {a.info.id: {"n": 1}, c.info.id: {"n": 1}}


def test_a_backup_whose_copy_expired_during_a_long_request_on_the_primary_takes_the_next_write() -> None:
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(n=0))
    assert session_id is not None
    (backup_id,) = a.manager._placed[session_id].holders
    b = cluster.members[backup_id]
    long = a.begin(session_id, NOW)  # a long request on the primary; its keep-alives never reach b
    cluster.now = NOW + 1900
    cluster.deliver(b, b.sweep(cluster.now))  # b's copy expires quietly: only the primary ends a session
    assert session_id not in b.store
    assert not b.manager.is_dead(session_id)
    long["n"] = 1  # the request ends and writes: b gets the write, lacks the copy, asks for it
    cluster.deliver(a, a.end(long, cluster.now, session_id).messages)
    assert cluster.copies(session_id) == {a.info.id: {"n": 1}, b.info.id: {"n": 1}}
