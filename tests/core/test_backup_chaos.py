"""Random schedules of non-sticky requests on BackupManagers under network faults.

Each schedule (``backup_chaos_sim.generate``: seeded, deterministic) runs 3-5 members
with 1 or 2 backups on a SimCluster; every request lands on a random member with its
client's cookie (the route of the member that served it last, or another one), and
requests of a round overlap (fetch, load, hold, release). Profiles: ``delays`` (FIFO
links, 1-80 ms), ``duplicates`` (FIFO, 30 % duplicated), ``crash`` (up to ``backups``
members crash), ``join`` (crashes and new members), ``reorder`` (links that reorder, which
the real TCP transport never does, and duplicates). After the faults stop and the
cluster settles (``BackupHistory.problems``): one primary per session, placed on exactly
min(1 + k, members) members whose copies are equal and name it, no acknowledged write
that nothing concurrent superseded lost, no acknowledged end undone.

A fixed bug keeps its minimal (shrunk) schedule below as a test; seeds that still fail are
strict xfails (``FAILING``). To hunt for more: ``BACKUP_CHAOS_SEEDS=1000 pytest -k chaos``;
``backup_chaos_sim.shrink`` makes a failing schedule small.
"""

from __future__ import annotations

import os

import pytest

from .backup_chaos_sim import PROFILES, Schedule, generate, run

SEEDS = int(os.environ.get("BACKUP_CHAOS_SEEDS", "40"))

# -- the bugs, each with its minimal schedule --------------------------------------------------------

PLACEMENTS_BATCH = (
    "fixed: backup.py BackupManager._receive('placements'): _apply_placement returns a 'want' (the fetch of a "
    "session a request here is using) and _batched() raised ValueError on it: the batch's replies were lost"
)
CLAIMANT_DELTA = (
    "fixed: backup.py BackupManager._receive('delta'): the primary merged the delta of a member that took the "
    "session over concurrently (older placement) but never forwarded it to its backups (_compact only); the "
    "claimant's hand-over copy then brought nothing new (_took empty), so the backups never got the write"
)
ORPHAN_AFTER_END = (
    "fixed: backup.py _should_own/_orphaned: the primary ends a session and crashes before the end reaches one "
    "backup; the first live holder applied the end (tombstone, no placement) and the other deferred to it "
    "forever: a copy nobody owned, never ended, never re-placed (a holder now passes the end on)"
)
ROTATION_UNDELIVERED = (
    "fixed: backup.py: the primary rotated the id and died before the rotation's delta reached its backup, "
    "which promoted the session under the old id while a member that had got the rotation's edges kept the "
    "new one (a member that knows an id was rotated now sends the edges to whoever names the old one)"
)

#: Minimal (shrunk) schedules, one per bug.
BUGS: dict[str, tuple[str, Schedule]] = {
    "placements_batch_with_a_fetch": (
        PLACEMENTS_BATCH,
        Schedule(
            profile="join",
            seed=26,
            members=4,
            backups=1,
            rounds=[
                (
                    [
                        ("write", 1, 2, "a", 5, 0.0, 0.05),
                        ("write", 2, 3, "c", "last", 0.0, 0.0),
                        ("new", 1, 2, "a", "last", 0.0, 0.0),
                    ],
                    0.3,
                ),
                ([("invalidate", 1, 0, "b", "last", 0.0, 0.0), ("append", 3, 0, "a", "last", 0.0, 0.0)], 0.02),
                ([("write", 3, 2, "c", "last", 0.0, 0.0)], 0.05),
                (
                    [
                        ("new", 1, 2, "b", 5, 0.005, 0.01),
                        ("write", 1, 0, "b", "last", 0.0, 0.0),
                        ("read", 7, 3, "a", "last", 0.0, 0.0),
                        ("write", 2, 2, "a", "last", 0.0, 0.0),
                    ],
                    0.05,
                ),
                (
                    [
                        ("delete", 1, 3, "c", "last", 0.0, 0.0),
                        ("read", 3, 1, "a", "last", 0.0, 0.01),
                        ("rotate", 0, 1, "a", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
            ],
            events=[(2, "join", 0), (4, "crash", 5)],
        ),
    ),
    "claimant_delta_not_forwarded": (
        CLAIMANT_DELTA,
        Schedule(
            profile="delays",
            seed=41,
            members=3,
            backups=1,
            rounds=[
                (
                    [
                        ("read", 0, 0, "a", "last", 0.0, 0.0),
                        ("new", 6, 1, "c", "last", 0.0, 0.0),
                        ("write", 7, 2, "c", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
                ([("write", 1, 3, "a", "last", 0.0, 0.0)], 0.0),
                ([("write", 2, 1, "c", "last", 0.0, 0.0)], 0.0),
            ],
            events=[],
        ),
    ),
    "orphan_after_an_unacknowledged_end": (
        ORPHAN_AFTER_END,
        Schedule(
            profile="crash",
            seed=64,
            members=3,
            backups=2,
            rounds=[
                ([("new", 4, 1, "c", "last", 0.0, 0.0), ("new", 6, 1, "c", "last", 0.005, 0.01)], 0.05),
                ([("invalidate", 7, 2, "a", "last", 0.0, 0.0)], 0.0),
                ([("append", 6, 3, "c", "last", 0.0, 0.0)], 0.02),
                ([("read", 3, 0, "a", "last", 0.0, 0.0)], 0.0),
            ],
            events=[(3, "crash", 7)],
        ),
    ),
    "rotation_lost_with_its_primary": (
        ROTATION_UNDELIVERED,
        Schedule(
            profile="crash",
            seed=4,
            members=3,
            backups=1,
            rounds=[
                ([("write", 6, 1, "a", "last", 0.0, 0.05), ("write", 7, 2, "c", 5, 0.0, 0.01)], 0.0),
                ([("invalidate", 5, 0, "c", "last", 0.0, 0.0)], 0.05),
                ([("rotate", 1, 1, "b", "last", 0.02, 0.0), ("new", 4, 1, "a", "last", 0.0, 0.0)], 0.05),
                ([("rotate", 7, 1, "b", "last", 0.0, 0.0)], 0.0),
            ],
            events=[(3, "crash", 4)],
        ),
    ),
}


#: The bugs not fixed yet: their schedules xfail (strict). A fixed one's schedule stays as its test.
OPEN: set[str] = set()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=reason)] if name in OPEN else [])
        for name, (reason, _) in BUGS.items()
    ],
)
def test_the_minimal_schedule_of_a_bug_converges(name: str) -> None:
    _, schedule = BUGS[name]
    assert run(schedule).problems() == []


# -- random schedules ------------------------------------------------------------------------------------

TWO_PRIMARIES = (
    "open: two members stay primaries of one session after concurrent takeovers and rotations of it "
    "(duplicates-57: a login on node2 lost its rotation to node1's while node2's request still held the "
    "session; node2 re-keyed the placement it had made under the losing id, newer than node1's, to the "
    "winning id and its release sent nothing new, while node1 ignores placements under the losing id)"
)
UNDER_PLACED = "open: a session placed on fewer than 1 + k members, or held by no primary, after a crash: not diagnosed"
DIFFERS = "open: copies differ after crashes and joins: not diagnosed"

#: Seeds that fail (FIFO profiles), run as strict xfails whatever ``BACKUP_CHAOS_SEEDS`` says, so a
#: fix shows. None of the first 40 of each profile fails; these are from a run of 200 each.
FAILING: dict[tuple[str, int], str] = {
    ("crash", 69): UNDER_PLACED,
    ("crash", 116): UNDER_PLACED,
    ("duplicates", 57): TWO_PRIMARIES,
    ("duplicates", 108): TWO_PRIMARIES,
    ("join", 77): TWO_PRIMARIES,
    ("join", 176): DIFFERS,
}

#: Profiles run by default; "reorder" (links that reorder, which TCP never does) on request:
#: ``BACKUP_CHAOS_PROFILES=reorder``.
DEFAULT_PROFILES = os.environ.get("BACKUP_CHAOS_PROFILES", "crash,delays,duplicates,join").split(",")


def _cases() -> list[object]:
    cases = []
    for profile in DEFAULT_PROFILES:
        assert profile in PROFILES, profile
        for seed in sorted({*range(SEEDS), *(seed for p, seed in FAILING if p == profile)}):
            reason = FAILING.get((profile, seed))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(profile, seed, marks=marks, id=f"{profile}-{seed}"))
    return cases


@pytest.mark.parametrize(("profile", "seed"), _cases())
def test_chaos_schedule_converges_and_keeps_acknowledged_writes(profile: str, seed: int) -> None:
    history = run(generate(profile, seed))
    assert history.problems() == []
