"""BackupManager: an end reaches a member that is not one of the session's holders (it
fetched a copy for one request, or its fetch is still being answered)."""

from __future__ import annotations

from .backup_sim import NOW, Cluster, Replica, put


def a_session_and_a_stranger() -> tuple[Cluster, Replica, Replica, str]:
    """Three members, k=1: a session made on ``a``, and ``c``, neither its primary nor its backup."""
    cluster = Cluster(3, backups=1)
    a = next(iter(cluster.members.values()))
    session_id = cluster.request(a, None, put(user="u"))
    assert session_id is not None
    (backup,) = a.manager._placed[session_id].holders
    c = next(r for r in cluster.members.values() if r is not a and r.info.id != backup)
    return cluster, a, c, session_id


def test_a_fetch_answered_just_before_an_invalidation_does_not_bring_the_session_back() -> None:
    cluster, a, c, session_id = a_session_and_a_stranger()
    # A request with the cookie lands on c, which holds no copy: it asks every member.
    want = c.manager.fetch([session_id], tuple(r.info for r in cluster.members.values() if r is not c))
    answers = [(r, r.manager.receive(c.info, want.kind, want.payload, NOW)) for r in cluster.members.values()]
    cluster.request(a, session_id, lambda s: s.invalidate())  # meanwhile the user logs out on a
    for holder, replies in answers:  # the answers reach c after the end, which c is never told of
        cluster.deliver(holder, replies)
    cluster.request(c, session_id, put(seen=1))  # c serves the session it fetched
    assert cluster.copies(session_id) == {}  # the logged-out session lives on, with c its primary


def test_a_logout_ends_the_copy_a_member_fetched_for_a_request_that_never_used_the_session() -> None:
    cluster, a, c, session_id = a_session_and_a_stranger()
    cluster.request(c, session_id, lambda s: None)  # one request lands on c and never touches the session
    cluster.request(a, session_id, lambda s: s.invalidate())  # the user logs out on a, its primary
    # c kept the copy it fetched (neither primary nor backup: no placement names it), so the end,
    # sent to the placement's holders only, never reaches it; the old cookie still opens it on c.
    seen: list[object] = []
    cluster.request(c, session_id, lambda s: seen.append(s.get("user")))
    assert seen == [None]
