"""The request path for a cookie whose id lost a concurrent rotation.

Two requests with the same cookie, on two members, both rotated the id (a login
clicked twice, a balancer that is not sticky): this member made s1 -> mine, the other
s1 -> theirs with the newer stamp, so every member holds the session under theirs.
The browser that got ``mine`` must still find its session, and learn the id that won;
a cookie with s1, rotated away, must not (session fixation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from replisession.cluster_config import ClusterConfig
from replisession.config import SessionConfig
from replisession.core.serializer import SessionSerializer
from replisession.node.replicator import Replicator
from replisession.node.sessions import Node
from replisession.web.cookie import SessionCookieCodec
from replisession.web.front import CookieAction, RequestSession, SessionFront

from .fake_member import A, B, FakeMember

SECRET = "rotation-secret"


def member_a() -> tuple[SessionFront, Node, FakeMember]:
    """A node that is member ``a`` of a cluster (its member faked), with a front to serve requests."""
    config = SessionConfig.build(secret_key=SECRET, route="a")
    node = Node(config, clock=lambda: 100.0)
    member = FakeMember((), answer=True)  # alone in its cluster: every send is done at once
    cluster = ClusterConfig(manager="delta", send_mode="sync", members=(), route="a")
    node.replicator = Replicator(node.store, member, cluster, node.clock)  # type: ignore[arg-type]
    member.on_bound(A)
    node.store.change_sink = node._publish
    return SessionFront(node, SessionCookieCodec([SECRET], "a")), node, member


def serve(front: SessionFront, cookie: str | None, action: Any = None) -> tuple[RequestSession, CookieAction]:
    held = front.open("/", [cookie] if cookie is not None else [])
    assert isinstance(held, RequestSession)
    if action is not None:
        action(held.session)
    held.session.mark_accessed()
    return held, front.close(held)


@pytest.fixture
def a() -> Iterator[tuple[SessionFront, Node, FakeMember]]:
    front, node, member = member_a()
    yield front, node, member
    node.stop()  # the expiry timer the first request started


def test_the_losing_id_of_a_concurrent_rotation_is_served_and_its_cookie_re_issued(
    a: tuple[SessionFront, Node, FakeMember],
) -> None:
    front, node, member = a
    codec = front.codec
    assert codec is not None
    created, _ = serve(front, None, lambda s: s.update(x=1))
    old = created.session.id
    assert old is not None
    rotated, _ = serve(front, codec.encode(old), lambda s: s.rotate_id())
    mine = rotated.session.id
    assert mine is not None
    [stamp] = [payload["stamp"] for kind, payload, *_ in member.sent if kind == "delta" and payload["prev"] == old]
    manager = node.replicator.manager if node.replicator is not None else None
    assert manager is not None
    theirs = "t" * 64  # b's rotation of the same id, at the same counter: b's member id wins
    dumps = SessionSerializer().dumps
    delta = {
        "id": theirs,
        "prev": old,
        "owner": B.id,
        "stamp": [stamp[0], B.id],
        "sets": {"y": dumps(2)},
        "removes": [],
        "created": False,
        "destroyed": False,
        "expired": False,
        "mii": None,
        "age": 1.0,
    }
    manager.receive(B, "delta", delta, 100.0)
    assert node.store.ids() == [theirs]

    held, action = serve(front, codec.encode(mine))  # the browser that logged in here
    assert (held.session.id, dict(held.session)) == (theirs, {"x": 1, "y": 2})
    assert action is CookieAction.SET  # the response names the id that won

    fixated, action = serve(front, codec.encode(old))  # a cookie planted before the login
    assert fixated.session.id is None
    assert fixated.cookie_id is None
    assert action is CookieAction.NONE
