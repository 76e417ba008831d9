"""A copy made of a delta alone (a joiner before its transfer, or a copy that expired here
during a long request on the owner): the node asks the writer for the whole session, and a
request for it fetches it first instead of serving part of the session."""

from __future__ import annotations

from typing import Any

import msgpack

from replisession.core.store import SessionStore
from replisession.node.replicator import Replicator

from .fake_member import B, FakeMember, replicator_of


def replicator() -> tuple[Replicator, FakeMember, SessionStore]:
    member = FakeMember()
    node, store = replicator_of(member, "delta")
    member.sent.clear()
    return node, member, store


def delta(session_id: str, *, created: bool, counter: int = 5) -> dict[str, Any]:
    return {
        "id": session_id,
        "prev": None,
        "owner": B.id,
        "stamp": [counter, B.id],
        "sets": {"y": msgpack.packb(2)},
        "removes": [],
        "created": created,
        "destroyed": False,
        "expired": False,
        "mii": None,
        "age": 10.0,
    }


def test_a_copy_made_of_a_later_delta_asks_its_writer_for_the_whole_session() -> None:
    node, member, store = replicator()
    replies = member.handlers["delta"](B, delta("s9", created=False))
    assert list(replies) == [("want", {"ids": ["s9"]})]  # back to B, which wrote it
    assert dict(store.peek("s9") or {}) == {"y": 2}
    # Until the whole copy comes, a request for it (even routed here) fetches it first.
    assert node.fetch("s9", "a") is not None
    [(kind, payload, *_)] = member.sent
    assert (kind, payload) == ("want", {"ids": ["s9"]})


def test_a_copy_made_by_the_creating_delta_is_whole() -> None:
    node, member, _ = replicator()
    assert list(member.handlers["delta"](B, delta("s9", created=True)) or []) == []
    assert node.fetch("s9", "a") is None
    assert member.sent == []


def test_the_whole_copy_ends_the_fetching() -> None:
    node, member, _ = replicator()
    member.handlers["delta"](B, delta("s9", created=False))
    # A whole copy, as a member that got the creating delta packs it
    writer, writer_member, _ = replicator()
    assert writer.manager is not None
    writer_member.handlers["delta"](B, delta("s9", created=True))
    whole = writer.manager._entries(["s9"], 100.0)
    assert not list(member.handlers["sessions"](B, {"sessions": whole, "last": False, "dead": [], "aliases": []}) or [])
    assert node.fetch("s9", "a") is None


def test_a_partial_copy_passed_on_stays_partial() -> None:
    node, member, _ = replicator()
    member.handlers["delta"](B, delta("s9", created=False))
    other, other_member, _ = replicator()
    assert other.manager is not None
    assert node.manager is not None
    passed = node.manager._entries(["s9"], 100.0)  # this member's partial copy, in a transfer
    other_member.handlers["sessions"](B, {"sessions": passed, "last": False, "dead": [], "aliases": []})
    assert other.manager.partial("s9")
    assert other.fetch("s9", "a") is not None
