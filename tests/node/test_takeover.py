"""A request for a session another member served last takes it over as it begins.

The balancer moved the user (a failover, a switch, no stickiness) to member a while b
owns the session. Were ownership to move only when the request ends, b's expiry timer
could end the session under a request that outlasts the idle timeout (an upload, a
long poll) and its write would be lost; so a says it owns the session before the
request runs, as Tomcat's JvmRouteBinderValve acts before the request does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replisession.core.ids import SESSION_ID_LENGTH
from replisession.core.serializer import SessionSerializer
from replisession.node.sessions import Node
from replisession.web.cookie import SessionCookieCodec
from replisession.web.front import CookieAction, Fetch, RequestSession, SessionFront

from .fake_member import A, B, FakeMember
from .test_rotation_lookup import SECRET, member_a

SID = "s" * SESSION_ID_LENGTH


@pytest.fixture
def a() -> Iterator[tuple[SessionFront, Node, FakeMember]]:
    front, node, member = member_a()
    member.live = [B]
    yield front, node, member
    node.stop()


def b_created(node: Node, session_id: str) -> None:
    """b made the session (and so owns it); a holds its copy."""
    manager = node.replicator.manager if node.replicator is not None else None
    assert manager is not None
    delta = {
        "id": session_id,
        "prev": None,
        "owner": B.id,
        "stamp": [1, B.id],
        "sets": {"cart": SessionSerializer().dumps([1])},
        "removes": [],
        "created": True,
        "destroyed": False,
        "expired": False,
        "mii": None,
        "age": 0.0,
    }
    assert manager.receive(B, "delta", delta, 100.0) == []
    assert manager.owner_of(session_id) == B.id


def open_session(front: SessionFront, cookie: str) -> RequestSession:
    held = front.open("/upload", [cookie])
    if isinstance(held, Fetch):  # b is alive and the cookie names it: its copy first
        held.wait()
        held = front.open("/upload", [cookie], fetched=True)
    assert isinstance(held, RequestSession)
    return held


def test_the_member_serving_another_member_s_session_claims_it_before_the_request_runs(
    a: tuple[SessionFront, Node, FakeMember],
) -> None:
    front, node, member = a
    b_created(node, SID)
    codec = front.codec
    assert codec is not None
    cookie = SessionCookieCodec([SECRET], "b").encode(SID)  # the cookie b issued
    held = open_session(front, cookie)
    claims = [payload for kind, payload, *_ in member.sent if kind == "access"]
    assert [claim["owner"] for claim in claims] == [A.id]  # sent as the request began
    manager = node.replicator.manager if node.replicator is not None else None
    assert manager is not None
    assert manager.owner_of(SID) == A.id
    held.session["cart"] = [1, 2]
    assert front.close(held) is CookieAction.SET  # re-routed to a
    assert [kind for kind, *_ in member.sent].count("access") == 1  # the end sends the delta alone
    # a's own next request: a owns it already, nothing is claimed.
    again = open_session(front, codec.encode(SID))
    front.close(again)
    assert [kind for kind, *_ in member.sent].count("access") == 1
