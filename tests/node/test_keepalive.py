"""A request that outlasts the idle timeout keeps its session alive on the other members.

The member's store never expires a session a request is using; the other members learn
it is in use from a notice the node's timer sends, every ``access_throttle`` seconds, for
each session a request here holds. Without it the owner (the member that served the
session last) could expire the session under a long upload or long poll elsewhere."""

from __future__ import annotations

from replisession.cluster_config import ClusterConfig
from replisession.config import SessionConfig
from replisession.core.serializer import SessionSerializer
from replisession.node.replicator import Replicator
from replisession.node.sessions import Node
from replisession.web.cookie import SessionCookieCodec
from replisession.web.front import RequestSession, SessionFront

from .fake_member import A, B, FakeMember

SECRET = "keepalive-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def member_a(clock: Clock) -> tuple[Node, FakeMember, SessionFront]:
    """Member a of a cluster (its member faked, B alive and answering), with a front."""
    node = Node(SessionConfig.build(secret_key=SECRET, route="a"), clock=clock)
    member = FakeMember([B], answer=True)
    node.replicator = Replicator(node.store, member, ClusterConfig(manager="delta", members=(), route="a"), clock)  # type: ignore[arg-type]
    member.on_bound(A)
    node.store.change_sink = node._publish
    return node, member, SessionFront(node, SessionCookieCodec([SECRET], "a"))


def test_the_timer_tells_the_others_a_session_is_in_use_while_a_request_holds_it() -> None:
    clock = Clock()
    node, member, front = member_a(clock)
    try:
        created = front.open("/", [])
        assert isinstance(created, RequestSession)
        created.session["cart"] = [1]
        front.close(created)
        session_id = created.session.id
        assert session_id is not None
        upload = front.open("/upload", [front.codec.encode(session_id)])  # type: ignore[union-attr]
        assert isinstance(upload, RequestSession)
        member.sent.clear()

        def notices() -> list[dict[str, object]]:
            node.replicator.tick()  # type: ignore[union-attr]
            return [payload for kind, payload, *_ in member.sent if kind == "access"]

        clock.now = 130.0
        assert notices() == []  # the creation's delta went out 30 s ago (the throttle: 60 s)
        clock.now = 161.0
        [notice] = notices()
        assert (notice["id"], notice["owner"]) == (session_id, A.id)  # a touch, naming the owner
        clock.now = 200.0
        assert len(notices()) == 1  # throttled
        clock.now = 230.0
        assert len(notices()) == 2
        front.close(upload)
        clock.now = 400.0
        assert len(notices()) == 2  # no request holds it any more
    finally:
        node.stop()


def test_the_timer_runs_often_enough_for_a_short_idle_timeout() -> None:
    # Notices at least four times per idle timeout: with 40 s, every 10 s, not every sweep_interval.
    config = SessionConfig.build(secret_key=SECRET, route="a", max_inactive_interval=40)
    node = Node(config, clock=Clock())
    assert node._timer_interval() == 60.0  # no cluster: the sweep's own interval
    member = FakeMember([B], answer=True)
    node.replicator = Replicator(node.store, member, ClusterConfig(manager="delta", members=(), route="a"), Clock())  # type: ignore[arg-type]
    member.on_bound(A)
    assert node._timer_interval() == 10.0


def test_a_request_on_a_session_another_member_owns_and_left_idle_notifies_as_it_begins() -> None:
    # The timer's first notice could come after the owner's deadline: one goes as the request begins.
    clock = Clock()
    node, member, front = member_a(clock)
    try:
        manager = node.replicator.manager
        assert manager is not None
        sid = "k" * 24
        delta = {
            "id": sid,
            "prev": None,
            "owner": B.id,
            "stamp": [1, B.id],
            "sets": {"x": SessionSerializer().dumps(1)},
            "removes": [],
            "created": True,
            "destroyed": False,
            "expired": False,
            "mii": 40.0,  # its own timeout: notices every 10 s, and the timer runs that often
            "age": 0.0,
        }
        assert manager.receive(B, "delta", delta, 100.0) == []
        assert node._timer_interval() == 10.0
        clock.now = 105.0  # used 5 s ago: the owner's copy too, nothing to say yet
        held = front.open("/", [front.codec.encode(sid)])  # type: ignore[union-attr]
        assert isinstance(held, RequestSession)
        front.close(held)
        assert [kind for kind, *_ in member.sent] == []
        clock.now = 125.0  # idle for 20 s: the owner may be close to its deadline
        held = front.open("/", [front.codec.encode(sid)])  # type: ignore[union-attr]
        assert isinstance(held, RequestSession)
        [(kind, payload, *_)] = member.sent
        assert (kind, payload) == ("access", {"id": sid, "owner": B.id, "stamp": [1, B.id]})  # a touch
        front.close(held)
    finally:
        node.stop()
