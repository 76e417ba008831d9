"""A member that missed an end (its sender died mid-send) hears of it from one that did not,
through the node: the told member drops its copy and passes the end to every member."""

from __future__ import annotations

from typing import Any

import msgpack

from replisession.core.messages import MemberInfo

from .fake_member import B, FakeMember, replicator_of

C = MemberInfo("c", "127.0.0.1", 4003, "c" * 32)


def write(session_id: str, *, destroyed: bool = False, counter: int = 5) -> dict[str, Any]:
    return {
        "id": session_id,
        "prev": None,
        "owner": B.id,
        "stamp": [counter, B.id],
        "sets": {} if destroyed else {"y": msgpack.packb(2)},
        "removes": [],
        "created": not destroyed,
        "destroyed": destroyed,
        "expired": False,
        "mii": None,
        "age": 10.0,
    }


def test_a_member_that_ended_a_session_answers_a_write_of_it_with_the_end() -> None:
    member = FakeMember(live=(B, C))
    _, store = replicator_of(member, "delta")
    member.handlers["delta"](B, write("s9"))
    member.handlers["delta"](B, write("s9", destroyed=True, counter=6))
    assert "s9" not in store
    replies = list(member.handlers["delta"](C, write("s9", counter=7)) or [])  # C missed the end
    assert [(kind, payload["sessions"], [i for i, _ in payload["dead"]]) for kind, payload in replies] == [
        ("sessions", [], ["s9"])
    ]


def test_a_member_told_of_an_end_it_missed_drops_its_copy_and_passes_the_end_to_every_member() -> None:
    member = FakeMember(live=(B, C))
    _, store = replicator_of(member, "delta")
    member.handlers["delta"](B, write("s9"))
    member.sent.clear()
    told = {"sessions": [], "last": False, "dead": [["s9", 3600.0]], "aliases": []}
    assert list(member.handlers["sessions"](C, told) or []) == []  # nothing back to C, which knows
    assert "s9" not in store
    [(kind, payload, _, targets, _)] = member.sent  # in the configured mode, waited for by nobody
    assert (kind, [i for i, _ in payload["dead"]], targets) == ("sessions", ["s9"], (B, C))
