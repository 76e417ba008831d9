"""Rotations: the edges of rotated ids and the one id of each family, whatever the order they arrived in."""

from __future__ import annotations

import itertools

import pytest

from replisession.core.rotations import Rotations

Edge = tuple[str, str, tuple[int, str]]

A, B = "a" * 32, "b" * 32  # member ids: equal counters, b's edge wins

#: s1 -> s2 (a) and s1 -> s3 (b) concurrently; then s2 -> s4 (a), on the losing branch.
EDGES: list[Edge] = [("s1", "s2", (2, A)), ("s1", "s3", (2, B)), ("s2", "s4", (3, A))]


def linked(edges: list[Edge], until: float = 100.0) -> Rotations:
    rotations = Rotations()
    for old, new, stamp in edges:
        assert rotations.link(old, new, stamp, until)
    return rotations


@pytest.mark.parametrize("order", list(itertools.permutations(EDGES)), ids=str)
def test_every_id_of_a_family_resolves_to_the_leaf_of_the_newest_edges_in_any_order(order: tuple[Edge, ...]) -> None:
    rotations = linked(list(order))
    ids = ("s1", "s2", "s3", "s4")
    assert {i: rotations.resolve(i, {}) for i in ids} == dict.fromkeys(ids, "s3")
    assert rotations.resolve("s9", {}) == "s9"  # no family: itself


def test_only_a_losing_leaf_has_a_successor() -> None:
    rotations = linked(EDGES)
    assert [rotations.successor(i, {}) for i in ("s1", "s2", "s3", "s4", "s9")] == [None, None, None, "s3", None]
    assert rotations.successor("s4", {"s4": "s5"}) is None  # rotated away here, not replicated yet


def test_a_rotation_not_replicated_yet_is_followed_where_no_edge_leads() -> None:
    rotations = linked(EDGES)
    assert rotations.resolve("s1", {"s3": "s7"}) == "s7"  # s3 rotated here by a request under way
    assert rotations.resolve("s1", {"s1": "s8"}) == "s3"  # an edge leads from s1: the edges decide


def test_cycles_and_second_parents_are_refused_the_same_edge_keeps_its_newest_stamp() -> None:
    rotations = linked(EDGES)
    assert not rotations.link("s4", "s1", (9, A), 100.0)  # s1 is s4's ancestor
    assert not rotations.link("s3", "s3", (9, A), 100.0)
    assert not rotations.link("s3", "s4", (1, B), 100.0)  # s4's parent is s2, by a newer edge
    assert rotations.link("s1", "s2", (5, A), 100.0)  # the same rotation, stamped again: now s2 wins at s1
    assert rotations.resolve("s1", {}) == "s4"
    assert rotations.link("s3", "s4", (6, B), 100.0)  # a newer claim on s4's parent replaces the older
    # Each edge with the seconds its family is still remembered (linked until 100, asked at 40).
    edges = [["s1", "s2", [5, A], 60.0], ["s1", "s3", [2, B], 60.0], ["s3", "s4", [6, B], 60.0]]
    assert sorted(rotations.edges(40.0)) == edges
    assert rotations.resolve("s1", {}) == "s2"


def test_a_family_is_forgotten_as_a_whole_a_horizon_after_its_newest_edge() -> None:
    rotations = Rotations()
    rotations.link("s1", "s2", (2, A), 10.0)
    rotations.link("s1", "s3", (2, B), 20.0)  # newer: the whole family is kept until 20
    rotations.link("s8", "s9", (1, A), 10.0)
    rotations.forget(15.0)
    assert (rotations.resolve("s2", {}), rotations.resolve("s8", {})) == ("s3", "s8")
    rotations.forget(20.0)
    assert len(rotations) == 0
    assert rotations.family("s1", 20.0) == []


def test_the_family_of_any_id_is_every_edge_below_its_root() -> None:
    rotations = linked([*EDGES, ("s7", "s8", (1, A))])
    expected = sorted([old, new, list(stamp), 0.0] for old, new, stamp in EDGES)  # none left at 100
    assert sorted(rotations.family("s4", 100.0)) == sorted(rotations.family("s1", 100.0)) == expected
    assert rotations.descends("s4", "s1")
    assert not rotations.descends("s3", "s2")
