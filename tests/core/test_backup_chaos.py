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
END_MISSED_BY_THE_PRIMARY = (
    "fixed: replication.py/backup.py: a member invalidated a session and crashed after its end reached "
    "members holding no placed copy, before it reached the primary; the primary re-placed the session on one "
    "of them, whose tombstone refused the copy, forever (a member with the end now tells the sender of a "
    "copy, write, keep-alive or placement of it, which ends its copy and passes the end on)"
)

NAMED_WITHOUT_ITS_COPY = (
    "fixed: placing.py _apply_placement: two members took a session over at once; the former primary followed "
    "the placement that lost and dropped its copy, then the winner's placement named it a backup, counting on "
    "the copy it had held: a backup without a copy, for good (a holder named without its copy now asks)"
)
CREATED_AFTER_PLACEMENT = (
    "fixed: backup.py _receive_delta: a rebalance placed a session a request was creating, before its release; "
    "the backup, named without a copy, asked for it (nothing to send yet), then got the creating delta and, "
    "holding no copy, asked again within the retry interval: never a copy (a creating delta is the whole session)"
)
VOID_PLACEMENT = (
    "fixed: backup.py _fold/accessed: a request took the session over under an id that lost a concurrent "
    "rotation; every member ignored that placement, and the request's release, finding the placement already "
    "its own, sent none under the winning id: two primaries (such a placement is now made again, to every member)"
)
STALE_FETCH_ANSWER = (
    "fixed: placing.py _apply_placement: a former primary, displaced by a newer placement (which it forgot with "
    "its copy), got the answer to a fetch it had made before, naming it the owner, and took it for its own: two "
    "primaries (a fetch answer never makes its asker the owner)"
)

ROTATED_BY_A_STRANGER = (
    "fixed: backup.py _fold: a member that took a session over (a fetched copy) rotated its id without "
    "knowing of another's takeover; the other owner missed the new placement (under an id it did not know yet), "
    "then got only the rotation's edges, as a member holding no copy does, and kept its own: two primaries"
)

CLAIMED_WRITE_NOT_EVERYWHERE = (
    "fixed: placing.py _place: a member merged the write of another taking the session over (which sent it to "
    "the backups it chose), then took the session over itself and sent its own backups only its delta: the "
    "former primary, one of them, never got the other's write (a copy that merged a claimant's write now goes "
    "in full to every backup)"
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
    "end_missed_by_the_primary": (
        END_MISSED_BY_THE_PRIMARY,
        Schedule(
            profile="crash",
            seed=69,
            members=4,
            backups=1,
            rounds=[
                ([("delete", 0, 2, "c", 3, 0.0, 0.01), ("write", 6, 1, "c", "last", 0.005, 0.01)], 0.0),
                ([("append", 2, 3, "b", "last", 0.0, 0.05)], 0.02),
                ([("write", 4, 1, "c", "last", 0.0, 0.0), ("invalidate", 3, 3, "c", "last", 0.0, 0.0)], 0.005),
                ([("write", 7, 2, "a", "last", 0.0, 0.0)], 0.05),
                ([("read", 6, 0, "a", "last", 0.0, 0.0)], 0.02),
                ([("write", 6, 0, "c", "last", 0.0, 0.0)], 0.0),
            ],
            events=[(5, "crash", 7)],
        ),
    ),
    "named_without_its_copy": (
        NAMED_WITHOUT_ITS_COPY,
        Schedule(
            profile="join",
            seed=172,
            members=4,
            backups=1,
            rounds=[
                ([("new", 3, 3, "b", "last", 0.02, 0.01), ("write", 2, 1, "a", 3, 0.0, 0.05)], 0.0),
                ([("invalidate", 6, 2, "a", "last", 0.0, 0.0), ("write", 1, 2, "b", "last", 0.0, 0.0)], 0.3),
                (
                    [
                        ("append", 6, 2, "b", "last", 0.0, 0.0),
                        ("rotate", 1, 1, "a", "last", 0.0, 0.0),
                        ("invalidate", 2, 1, "a", "last", 0.0, 0.0),
                        ("write", 0, 0, "c", "last", 0.0, 0.05),
                    ],
                    0.05,
                ),
                ([("rotate", 2, 3, "a", "last", 0.0, 0.0)], 0.005),
            ],
            events=[(0, "join", 0), (3, "crash", 6), (3, "join", 0)],
        ),
    ),
    "created_delta_after_an_early_placement": (
        CREATED_AFTER_PLACEMENT,
        Schedule(
            profile="join",
            seed=43,
            members=5,
            backups=1,
            rounds=[
                (
                    [
                        ("invalidate", 7, 1, "c", "last", 0.0, 0.05),
                        ("write", 5, 2, "b", "last", 0.0, 0.05),
                        ("delete", 3, 0, "a", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
                ([("delete", 5, 2, "a", "last", 0.005, 0.01), ("append", 6, 2, "a", "last", 0.0, 0.0)], 0.05),
                (
                    [
                        ("read", 7, 2, "a", "last", 0.0, 0.0),
                        ("append", 2, 0, "a", "last", 0.0, 0.0),
                        ("invalidate", 7, 1, "b", "last", 0.0, 0.0),
                    ],
                    0.05,
                ),
                ([("write", 5, 3, "b", "last", 0.005, 0.05)], 0.0),
            ],
            events=[(0, "crash", 6), (3, "join", 0), (3, "join", 0)],
        ),
    ),
    "placement_void_after_a_lost_rotation": (
        VOID_PLACEMENT,
        Schedule(
            profile="duplicates",
            seed=57,
            members=3,
            backups=1,
            rounds=[
                ([("invalidate", 2, 0, "a", "last", 0.005, 0.0)], 0.005),
                ([("invalidate", 4, 2, "a", "last", 0.0, 0.05)], 0.005),
                ([("write", 2, 2, "b", "last", 0.0, 0.0)], 0.3),
                (
                    [
                        ("new", 7, 0, "c", 6, 0.0, 0.05),
                        ("write", 0, 1, "c", "last", 0.0, 0.0),
                        ("invalidate", 7, 3, "c", "last", 0.0, 0.0),
                    ],
                    0.05,
                ),
                ([("append", 6, 2, "b", "last", 0.0, 0.0), ("write", 0, 2, "c", "last", 0.0, 0.0)], 0.0),
                ([("write", 4, 0, "a", "last", 0.005, 0.05)], 0.02),
                ([("rotate", 7, 0, "a", "last", 0.0, 0.0)], 0.0),
                ([("read", 3, 3, "a", "last", 0.0, 0.0)], 0.05),
                ([("rotate", 6, 0, "c", "last", 0.0, 0.0)], 0.0),
            ],
            events=[],
        ),
    ),
    "a_stale_fetch_answer_names_a_former_owner": (
        STALE_FETCH_ANSWER,
        Schedule(
            profile="duplicates",
            seed=108,
            members=5,
            backups=1,
            rounds=[
                ([("read", 1, 3, "a", "last", 0.005, 0.01)], 0.0),
                (
                    [
                        ("new", 2, 0, "a", "last", 0.005, 0.0),
                        ("new", 3, 2, "a", "last", 0.005, 0.05),
                        ("append", 0, 3, "b", "last", 0.005, 0.01),
                    ],
                    0.3,
                ),
                ([("write", 2, 1, "a", "last", 0.0, 0.0)], 0.005),
                (
                    [
                        ("delete", 6, 2, "a", "last", 0.0, 0.0),
                        ("new", 5, 0, "b", "last", 0.0, 0.0),
                        ("read", 5, 1, "a", 5, 0.0, 0.01),
                    ],
                    0.02,
                ),
                ([("read", 7, 1, "c", "last", 0.0, 0.0), ("write", 6, 1, "b", "last", 0.0, 0.0)], 0.0),
            ],
            events=[],
        ),
    ),
    "rotated_by_a_member_that_did_not_know_the_owner": (
        ROTATED_BY_A_STRANGER,
        Schedule(
            profile="join",
            seed=18,
            members=4,
            backups=1,
            rounds=[
                (
                    [
                        ("new", 5, 0, "c", "last", 0.02, 0.05),
                        ("read", 7, 0, "b", "last", 0.0, 0.0),
                        ("append", 6, 3, "a", "last", 0.0, 0.0),
                    ],
                    0.005,
                ),
                ([("write", 2, 3, "a", "last", 0.0, 0.0)], 0.05),
                ([("delete", 6, 0, "b", "last", 0.0, 0.0)], 0.3),
                (
                    [
                        ("new", 5, 0, "a", 6, 0.0, 0.05),
                        ("write", 7, 3, "c", "last", 0.0, 0.0),
                        ("write", 7, 1, "b", "last", 0.0, 0.01),
                        ("read", 0, 0, "b", "last", 0.0, 0.0),
                    ],
                    0.05,
                ),
                ([("append", 7, 1, "b", "last", 0.0, 0.0), ("write", 7, 0, "b", "last", 0.0, 0.05)], 0.05),
                ([("append", 5, 2, "b", "last", 0.0, 0.0), ("write", 3, 0, "c", "last", 0.0, 0.0)], 0.0),
                ([("write", 1, 0, "c", "last", 0.0, 0.0), ("write", 4, 3, "a", "last", 0.0, 0.0)], 0.3),
                ([("write", 7, 3, "c", "last", 0.0, 0.0)], 0.05),
                (
                    [
                        ("rotate", 3, 3, "c", 1, 0.0, 0.05),
                        ("append", 7, 0, "a", "last", 0.0, 0.0),
                        ("new", 2, 0, "a", "last", 0.0, 0.0),
                        ("rotate", 6, 1, "b", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
            ],
            events=[(0, "join", 0), (3, "join", 0), (5, "crash", 1)],
        ),
    ),
    "a_claimed_write_reaches_every_backup": (
        CLAIMED_WRITE_NOT_EVERYWHERE,
        Schedule(
            profile="delays",
            seed=17,
            members=5,
            backups=2,
            rounds=[
                (
                    [
                        ("read", 2, 1, "c", 7, 0.02, 0.0),
                        ("rotate", 7, 2, "c", "last", 0.0, 0.05),
                        ("delete", 0, 1, "b", "last", 0.0, 0.0),
                    ],
                    0.02,
                ),
                (
                    [
                        ("invalidate", 5, 3, "c", "last", 0.0, 0.01),
                        ("rotate", 4, 0, "a", "last", 0.0, 0.0),
                        ("read", 3, 0, "b", "last", 0.0, 0.0),
                    ],
                    0.005,
                ),
                (
                    [
                        ("rotate", 0, 3, "c", "last", 0.0, 0.0),
                        ("write", 3, 2, "a", "last", 0.0, 0.0),
                        ("write", 0, 3, "b", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
                ([("write", 3, 0, "b", "last", 0.0, 0.0), ("delete", 2, 3, "c", "last", 0.005, 0.0)], 0.05),
                (
                    [
                        ("new", 6, 2, "c", "last", 0.0, 0.0),
                        ("write", 7, 1, "b", "last", 0.0, 0.01),
                        ("write", 5, 0, "a", "last", 0.0, 0.0),
                    ],
                    0.05,
                ),
                (
                    [
                        ("write", 7, 3, "b", "last", 0.02, 0.05),
                        ("append", 2, 3, "a", "last", 0.0, 0.0),
                        ("append", 3, 3, "c", "last", 0.005, 0.05),
                        ("write", 3, 1, "c", "last", 0.0, 0.0),
                    ],
                    0.0,
                ),
                ([("read", 6, 3, "c", "last", 0.0, 0.0)], 0.3),
                ([("read", 4, 3, "b", "last", 0.0, 0.0)], 0.02),
                ([("invalidate", 7, 0, "b", "last", 0.0, 0.0), ("delete", 2, 1, "c", 1, 0.0, 0.0)], 0.005),
                ([("invalidate", 4, 0, "a", "last", 0.0, 0.0)], 0.0),
                ([("append", 6, 3, "c", "last", 0.0, 0.0)], 0.005),
                (
                    [
                        ("write", 3, 3, "a", 2, 0.0, 0.01),
                        ("read", 4, 0, "a", 2, 0.005, 0.05),
                        ("append", 0, 0, "a", "last", 0.02, 0.05),
                        ("invalidate", 2, 1, "b", "last", 0.005, 0.05),
                    ],
                    0.0,
                ),
            ],
            events=[],
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

LOST_ON_A_COPY = (
    "open: an acknowledged write missing from one copy, or from every copy, after crashes and concurrent takeovers"
)
DIFFERS = "open: copies that differ after crashes and concurrent takeovers: not diagnosed"
NO_PRIMARY = (
    "open: a copy nobody owns after concurrent rotations (duplicates-470: a member placed the session under "
    "the id both rotations started from, then voided that placement when its side's rotation lost; the "
    "winner's primary had followed it meanwhile, and each member ended up following the other's placement)"
)
STRAY_HAND_OVER = (
    "open: copies that differ after three members took a session over at once (join-586: one handed its copy "
    "to the owner it followed, which had just handed the session on in turn; the copy stayed there, unplaced)"
)
UNDER_PLACED = "open: a session on fewer than 1 + k members after concurrent takeovers and joins: not diagnosed"

#: Seeds that fail (FIFO profiles), run as strict xfails whatever ``BACKUP_CHAOS_SEEDS`` says, so a
#: fix shows. None of the first 40 of each profile fails; these are from runs of seeds 0-699. A change
#: that sends one message more or less moves every later random delay: seeds are a sample, not bugs.
FAILING: dict[tuple[str, int], str] = {
    ("join", 77): LOST_ON_A_COPY,
    ("crash", 225): LOST_ON_A_COPY,
    ("crash", 234): LOST_ON_A_COPY,
    ("crash", 413): LOST_ON_A_COPY,
    ("crash", 422): LOST_ON_A_COPY,
    ("crash", 401): DIFFERS,
    ("join", 304): DIFFERS,
    ("delays", 489): NO_PRIMARY,
    ("duplicates", 470): NO_PRIMARY,
    ("join", 287): NO_PRIMARY,
    ("crash", 534): NO_PRIMARY,
    ("crash", 551): LOST_ON_A_COPY,
    ("crash", 562): LOST_ON_A_COPY,
    ("crash", 600): NO_PRIMARY,
    ("delays", 653): NO_PRIMARY,
    ("join", 586): STRAY_HAND_OVER,
    ("join", 662): UNDER_PLACED,
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
