"""Keep-alive notices and logins, in races a review of 91cd030 found (each test failed there;
its comments say how): a long login names the id the others know, a request that begins
close to the owner's deadline notifies at once, a session with a short timeout of its own
is kept alive often enough, a non-holder's keep-alive reaches the primary it has not heard
of, and two logins with one cookie leave one primary (BackupManager)."""

from __future__ import annotations

import pytest

from replisession.core.placement import place
from replisession.core.store import SessionPolicy

from .backup_sim import NOW, Cluster, session_and_taker
from .backup_sim import put as bput
from .test_replication import A, B, answered, deliver, put, read, replicas

# -- the keep-alive names the id a request here is rotating -------------------------------------------


def test_a_long_login_elsewhere_is_not_ended_by_the_owner_s_expiry() -> None:
    # b served s1 last (b owns it). A long request on a logs in (rotate_id) and runs past the idle
    # timeout; a's timer sends keep-alives. keepalive() names session.id, which is already the new,
    # unreleased id s2 (the store's rotated hook moved the meta there): b knows no s2, so b's copy of
    # s1 is never touched, and b asks a for s2 -- which a answers with the login's unreleased contents
    # (the _entries filter only guards the old id). b, the owner, expires s1 at 101 and ends it: on a,
    # s1 resolves to s2 through store.retired, so the login's in-use session is dropped and its
    # release sends nothing. b keeps an orphan copy of s2; a has nothing.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))  # notices every 25 s
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b owns s1
    login = a.begin("s1", 10.0)
    new = login.rotate_id()
    login["user"] = "u"
    for now in (30.0, 55.0, 80.0, 105.0, 130.0):  # both timers, every throttle
        answered(a, a.sweep(now), b, now=now)
        deliver(b, b.sweep(now), a, now=now)
    answered(a, a.end(login, 131.0, "s1").messages, b, now=131.0)
    assert a.sessions() == b.sessions() == {new: {"x": 1, "user": "u"}}, (a.sessions(), b.sessions())


def test_backup_a_long_login_on_a_backup_is_not_ended_by_the_primary_s_expiry() -> None:
    # The same with BackupManager: _rotated moved the placement to the new id, so the keep-alive for
    # the new id goes to the primary c, which holds no such id and asks a ("missing"); a is not the
    # primary, so nothing comes of it. c's copy of the old id is never touched; c expires it after
    # 1800 s and its end reaches a, where the old id resolves to the login's in-use session.
    cluster = Cluster(3, backups=1)
    a, _b, c = cluster.members.values()
    old = cluster.request(a, None, bput(n=0))
    assert old is not None
    cluster.now = NOW + 1
    cluster.request(c, old, bput(m=1))  # the user's click lands on c: c is the primary
    login = a.begin(old, NOW + 10)  # a long request on a logs the user in
    new = login.rotate_id()
    login["user"] = "u"
    for now in range(int(NOW) + 60, int(NOW) + 1900, 60):
        cluster.now = float(now)
        for replica in list(cluster.members.values()):
            cluster.deliver(replica, replica.sweep(cluster.now))
    cluster.deliver(a, a.end(login, cluster.now, old).messages)
    copies = cluster.copies(new)
    assert list(copies.values()) == [{"n": 0, "m": 1, "user": "u"}] * 2, copies


# -- the first keep-alive waits for the timer ----------------------------------------------------------


def test_a_request_that_begins_just_before_the_owner_s_deadline_is_not_ended_under_it() -> None:
    # b owns s1 (used at 1; b, the owner, has no grace: it ends s1 at 101). The user comes back at 90
    # on a (within the timeout) for a 20 s request. Nothing is sent as the request begins any more
    # (the claim at begin is gone) and the first keep-alive waits for a's timer, up to a throttle
    # later (a's timer ticks at 80 and 105 here). b's sweep at 101 ends the session under the
    # request; a drops it and the request's write is lost.
    a, b = replicas(A, B, policy=SessionPolicy(max_inactive_interval=100))
    deliver(a, a.request(None, put(x=1), 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b owns s1
    deliver(a, a.sweep(80.0), b, now=80.0)
    upload = a.begin("s1", 90.0)
    deliver(a, a.take_began(), b, now=90.0)  # idle since 1 (a throttle and more): a notice as it begins
    deliver(b, b.sweep(101.0), a, now=101.0)
    deliver(a, a.sweep(105.0), b, now=105.0)
    upload["x"] = 2
    deliver(a, a.end(upload, 110.0, "s1").messages, b, now=110.0)
    assert a.sessions() == b.sessions() == {"s1": {"x": 2}}, (a.sessions(), b.sessions())


def test_a_session_with_a_short_timeout_of_its_own_is_kept_alive_on_its_owner() -> None:
    # The keep-alive goes at most every access_throttle, computed from the store's default timeout
    # (min(60, 1800 / 4) = 60 s). The owner's copy has no grace, and a session's own timeout
    # (set_max_inactive_interval, replicated) can be shorter than the throttle: the owner's copy
    # expires between two notices and its end drops the session under the request: b's copy,
    # touched by a's notice at 20 (the next is due at 80), expires at 65 and b's sweep at 80 ends it.
    a, b = replicas(A, B)  # default policy: 1800 s, notices every 60 s

    def short(session):  # type: ignore[no-untyped-def]
        session["x"] = 1
        session.max_inactive_interval = 45

    deliver(a, a.request(None, short, 0.0).messages, b, now=0.0)
    deliver(b, b.request("s1", read("x"), 1.0).messages, a, now=1.0)  # b owns s1
    upload = a.begin("s1", 10.0)
    for now in (20.0, 40.0, 60.0, 80.0, 100.0, 120.0):  # both timers (sweep_interval 20 s)
        deliver(b, b.sweep(now), a, now=now)
        deliver(a, a.sweep(now), b, now=now)
    upload["x"] = 2
    deliver(a, a.end(upload, 125.0, "s1").messages, b, now=125.0)
    assert a.sessions() == b.sessions() == {"s1": {"x": 2}}, (a.sessions(), b.sessions())


# -- BackupManager: the keep-alive goes to the holders of a placement this member may not know ---------


def test_backup_a_long_request_on_a_non_holder_survives_a_takeover_elsewhere() -> None:
    # c fetched the session (no placement names it) for a long upload. Meanwhile the user's click
    # lands on d, which takes the session over; d's placement goes to the old holders and d's backup,
    # never to c (non-holders are not told). c's keep-alives keep going to the holders of the
    # placement c learned with its fetch (a, b): d, the primary now, is never touched, expires the
    # session after 1800 s, and its end reaches every member: c's upload loses its session.
    cluster = Cluster(4, backups=1)
    members = list(cluster.members.values())
    a = members[0]
    infos = [r.info for r in members]
    for _ in range(200):
        sid = cluster.request(a, None, bput(n=0))
        assert sid is not None
        (b_id,) = a.manager._placed[sid].holders
        c, d = (r for r in members if r.info.id not in (a.info.id, b_id))
        if place(sid, d.info, infos, 1) != (c.info.id,):  # d's backup is not c
            break
    cluster.deliver(c, [c.manager.fetch([sid], tuple(r.info for r in members if r is not c))])
    upload = c.begin(sid, NOW)
    cluster.now = NOW + 1
    cluster.request(d, sid, bput(m=1))  # d is the primary now
    for now in range(int(NOW) + 60, int(NOW) + 1900, 60):
        cluster.now = float(now)
        for replica in members:
            cluster.deliver(replica, replica.sweep(cluster.now))
    upload["done"] = True
    cluster.deliver(c, c.end(upload, cluster.now, sid).messages)
    copies = cluster.copies(sid)
    assert list(copies.values()) == [{"n": 0, "m": 1, "done": True}] * 2, copies


# -- BackupManager: two logins with the same cookie on two members --------------------------------------


@pytest.mark.parametrize("taker", ["backup", "other"])
def test_backup_two_concurrent_logins_with_one_cookie_leave_one_primary(taker: str) -> None:
    # a logs in (old -> new) while c, with the same cookie, logs in too (old -> its own id): c rotates
    # first, a releases, then c. _rotated now moves c's placement to c's unreleased id; a's rotation
    # (its delta when c is a backup, the new edges-only message otherwise) makes c's branch lose and
    # _fold re-keys c's in-use copy to a's id but pops c's placement with it (the new non-holder
    # branch only covers an id that descends, not a losing branch). c's release then places the
    # session with no previous placement: a, the winner's primary, is never told, and both a and c
    # are primaries of one id; a's copy lacks c's write. (Both variants of this order passed on the
    # parent, where the placement stayed under old and the delta's prev moved it.)
    cluster = Cluster(3, backups=1)
    a, old, _backup, c = session_and_taker(cluster, taker)
    if old not in c.store:  # the node's fetch
        cluster.deliver(c, [c.manager.fetch([old], tuple(r.info for r in cluster.members.values() if r is not c))])
    other = c.begin(old, NOW)
    other.rotate_id()
    login = a.begin(old, NOW)
    new = login.rotate_id()
    login["user"] = "u"
    cluster.deliver(a, a.end(login, NOW + 1, old).messages)
    other["y"] = 1
    done = c.end(other, NOW + 1, old)
    cluster.deliver(c, done.messages)
    owners = {r.info.id[-1]: {i: r.manager.owner_of(i) for i in r.store.ids()} for r in cluster.members.values()}
    assert len({o for held in owners.values() for o in held.values()}) == 1, owners
    copies = cluster.copies(new)
    assert all(v == {"n": 0, "user": "u", "y": 1} for v in copies.values()), copies
