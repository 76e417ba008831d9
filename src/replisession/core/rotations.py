"""The rotations of session ids, and the one id every member holds a session under (sans-IO).

``rotate_id`` on a member makes an edge *old -> new*, stamped with the Lamport stamp of
the delta that carries it. Two requests with the same cookie on two members can rotate
one id concurrently (s1 -> s2 on one, s1 -> s3 on the other): the edges then form a
*family* with two branches. Every member must hold the session under one id whatever
order the edges arrive in, so that id is a pure function of the edges, not of arrival:
from any id of the family, up to its root, then down, taking at each id the successor
whose edge has the highest stamp, to a leaf, the family's *canonical* id. Stamps are
totally ordered (the member id breaks ties), so members that have seen the same edges
pick the same id.

A leaf that is not canonical (s2 when s3 won) is a *losing leaf*: the member that made
it never rotated it away, and a browser holds it legitimately, so a request carrying it
is served the canonical session (:meth:`Rotations.successor`). An id that was rotated
away (it has a successor) opens nothing: a cookie planted before a login must not follow
the session to its new id (session fixation).

A family is forgotten as a whole, a horizon after its newest edge: forgetting one edge
of a conflict before the other would change the canonical id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Rotations", "Stamp"]

Stamp = tuple[int, str]

#: Edges followed in one direction before giving up: ids rotated this often within one
#: horizon, or a cycle in what peers sent, stop somewhere rather than loop.
_DEPTH = 32


@dataclass(slots=True)
class _Edge:
    old: str
    stamp: Stamp
    until: float  # when the family may be forgotten


class Rotations:
    """The rotation edges this member knows of, each with the stamp of the delta that made it."""

    def __init__(self) -> None:
        self._up: dict[str, _Edge] = {}  # new id -> its edge (a new id is fresh: one parent)
        self._down: dict[str, dict[str, Stamp]] = {}  # old id -> {new id: stamp}

    def __len__(self) -> int:
        return len(self._up)

    def link(self, old: str, new: str, stamp: Stamp, until: float) -> bool:
        """Record ``old -> new``; False when refused (a cycle, or ``new`` already has another
        parent through a newer edge: fresh ids never do, so only a confused peer sends one)."""
        if old == new or self._ancestor(new, old):
            return False
        edge = self._up.get(new)
        if edge is not None and edge.old == old:  # known (a duplicate, or the same rotation stamped again)
            edge.stamp = self._down[old][new] = max(edge.stamp, stamp)
        elif edge is not None and edge.stamp >= stamp:
            return False
        else:
            if edge is not None:
                self._unlink(new)
            self._up[new] = _Edge(old, stamp, until)
            self._down.setdefault(old, {})[new] = stamp
        self._keep(self.root(new), until)
        return True

    def rotated_by(self, new: str) -> str | None:
        """The id of the member whose rotation made ``new`` (its edge's stamp says); None: not one."""
        edge = self._up.get(new)
        return edge.stamp[1] if edge is not None else None

    def root(self, session_id: str) -> str:
        """The first id of ``session_id``'s family (itself if it was never a rotation's result)."""
        for _ in range(_DEPTH):
            edge = self._up.get(session_id)
            if edge is None:
                break
            session_id = edge.old
        return session_id

    def resolve(self, session_id: str, retired: Mapping[str, str]) -> str:
        """The canonical id of ``session_id``'s family. ``retired``: the rotations this member's
        store made and has not replicated yet (a request under way), followed where no edge leads."""
        current = self.root(session_id)
        for _ in range(_DEPTH):
            successors = self._down.get(current)
            following = _newest(successors) if successors else retired.get(current)
            if following is None:
                break
            current = following
        return current

    def successor(self, session_id: str, retired: Mapping[str, str]) -> str | None:
        """The canonical id for a losing leaf (an id in a family, never rotated away, yet not
        its canonical id); None for any other id, rotated-away ancestors included."""
        if session_id not in self._up or session_id in self._down or session_id in retired:
            return None
        canonical = self.resolve(session_id, retired)
        return canonical if canonical != session_id else None

    def descends(self, session_id: str, ancestor: str) -> bool:
        """``session_id`` is ``ancestor`` or was rotated from it (directly or not)."""
        return self._ancestor(ancestor, session_id)

    def family(self, session_id: str, now: float) -> list[list[Any]]:
        """The edges of ``session_id``'s family, as :meth:`edges` writes them."""
        edges: list[list[Any]] = []
        pending = [self.root(session_id)]
        while pending and len(edges) < _DEPTH * _DEPTH:
            for new in self._down.get(pending.pop(), {}):
                edges.append(self._written(new, now))
                pending.append(new)
        return edges

    def forget(self, now: float) -> None:
        """Drop the families whose horizon passed (every edge of a family shares it)."""
        for new in [new for new, edge in self._up.items() if edge.until <= now]:
            self._unlink(new)

    def edges(self, now: float) -> list[list[Any]]:
        """Every edge as ``[old, new, stamp, seconds left]`` (a state transfer carries them): the
        receiver keeps it only as long as this member still would, so passing it on never
        extends its life."""
        return [self._written(new, now) for new in self._up]

    def _written(self, new: str, now: float) -> list[Any]:
        edge = self._up[new]
        return [edge.old, new, list(edge.stamp), max(0.0, edge.until - now)]

    def _ancestor(self, candidate: str, session_id: str) -> bool:
        """``candidate`` is ``session_id`` or one of the ids it descends from."""
        for _ in range(_DEPTH):
            if session_id == candidate:
                return True
            edge = self._up.get(session_id)
            if edge is None:
                return False
            session_id = edge.old
        return True  # too deep to tell: refuse rather than risk a cycle

    def _keep(self, root: str, until: float) -> None:
        """Move the horizon of every edge below ``root`` to ``until`` at the latest."""
        pending, seen = [root], 0
        while pending and seen < _DEPTH * _DEPTH:
            for new in self._down.get(pending.pop(), {}):
                edge = self._up[new]
                edge.until = max(edge.until, until)
                pending.append(new)
                seen += 1

    def _unlink(self, new: str) -> None:
        edge = self._up.pop(new)
        successors = self._down[edge.old]
        del successors[new]
        if not successors:
            del self._down[edge.old]


def _newest(successors: Mapping[str, Stamp]) -> str:
    """The successor whose edge has the highest stamp (the id breaks a tie no honest peer makes)."""
    return max(successors, key=lambda new: (successors[new], new))
