"""``backup.py restore`` and ``backup.py memory``, on bare nodes (``replication.py _worker`` processes).

* ``restore``: members with ``--manager backup --backups 1``; member A makes N sessions
  (so it is the primary of every one, and their backups spread over the others), and
  once every backup has its copy A gets SIGKILL. Timed from the kill: each survivor
  dropping A (its ``member_left``), each survivor's "rebalanced ..." line (its pass over
  its sessions, every copy it sent acknowledged), and the moment the survivors' session
  counts add up to N * (1 + k) again (polled). Afterwards each survivor lists its ids
  and every one of A's sessions must be on exactly 1 + k of them.
* ``memory``: a primary that makes N sessions and the member that holds their copies,
  for either manager and two session sizes: tracemalloc's traced bytes after
  ``gc.collect()``, then RSS in runs without tracemalloc, per session.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _cluster import Worker, large_session_values, session_values, wait_until
from _harness import fmt_ms, free_port, median, print_table, settings

from replisession.core.serializer import SessionSerializer

__all__ = ["memory", "restore"]

BACKUPS = 1


def start_workers(stack: contextlib.ExitStack, count: int, options: list[str]) -> list[Worker]:
    """``count`` bare nodes that all list each other; stopped when ``stack`` closes."""
    ports = [free_port() for _ in range(count)]
    workers = []
    for index, port in enumerate(ports):
        worker = Worker(f"node{index + 1}", cluster_ports=ports, peer_port=port, options=options)
        stack.callback(worker.stop)
        workers.append(worker)
    for worker in workers:
        worker.ask("start", "started")
    for worker in workers:
        what = f"{worker.route} lists the {count - 1} others"
        wait_until(lambda w=worker: len(w.ask("stats", "stats")["members"]) == count - 1, 30, what, interval=0.05)
    return workers


def counts(workers: list[Worker]) -> list[int]:
    """Each worker's number of stored sessions (asking also collects the events they printed meanwhile)."""
    return [int(w.ask("count", "count")["sessions"]) for w in workers]


def seen(worker: Worker, event: str, since: float) -> dict[str, Any] | None:
    """The first ``event`` the worker printed at or after ``since``, left in place."""
    return next((e for e in worker.events if e["event"] == event and e["t"] >= since), None)


def held_ids(worker: Worker, path: Path) -> list[str]:
    worker.ask(f"ids {path}", "ids", 120)
    return path.read_text().split()


# -- restore ------------------------------------------------------------------------------------

_REBALANCED = re.compile(r"rebalanced (\d+) of (\d+) sessions in ([\d.]+)s")
_LINES_AFTER_COUNT = 30.0  # seconds the survivors' log lines may trail the counts


def one_restore(members: int, size: int, deadline: float, window: int) -> dict[str, Any]:
    options = ["--manager", "backup", "--backups", str(BACKUPS), "--check-sends", "--fill-window", str(window)]
    wanted = size * (1 + BACKUPS)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replisession-bench-")))
        workers = start_workers(stack, members, options)
        a, *survivors = workers
        fill = a.ask(f"fill {size}", "filled", 1800)
        started = time.monotonic()
        try:
            wait_until(lambda: sum(counts(survivors)) == size * BACKUPS, 120, "every backup has its copy", 0.05)
        except TimeoutError as exc:
            exc.add_note(
                f"{members} members, {size:,} sessions filled on {a.route}: {fill}; held {counts(workers)} "
                f"(want {size:,} on {a.route} and {size * BACKUPS:,} on the others)"
            )
            for worker in workers:
                exc.add_note(f"{worker.route} events: {worker.events}\n{worker.stderr_tail()}")
            raise
        backed_up = time.monotonic() - started
        before = counts(survivors)
        filled = held_ids(a, tmp / "a")
        killed = a.kill()
        reached = None
        while True:
            held = counts(survivors)
            now = time.monotonic()
            if reached is None and sum(held) == wanted:
                reached = now
            lines = [seen(w, "rebalanced", killed) for w in survivors]
            if reached is not None and (all(lines) or now - reached > _LINES_AFTER_COUNT):
                break
            if now - killed > deadline:
                raise TimeoutError(
                    f"{members} members, {size:,} sessions: no restore within {deadline:g}s of the SIGKILL: the "
                    f"survivors hold {held} (want {wanted:,} in all), log lines {lines}, events "
                    f"{[w.events for w in survivors]}\n" + "\n".join(w.stderr_tail() for w in survivors)
                )
            time.sleep(0.01)  # polling interval inside a deadline
        copies = Counter(i for index, w in enumerate(survivors) for i in held_ids(w, tmp / f"s{index}"))
    left = [seen(w, "left", killed) for w in survivors]
    own = [_REBALANCED.search(line["message"]) if line else None for line in lines]
    return {
        "fill_s": fill["seconds"],
        "fill_send_failures": fill["send_failures"],
        "backed_up_after_fill_s": backed_up,
        "held_before": before,
        "held_after": held,
        "detected_s": [e["t"] - killed if e else None for e in left],
        "rebalanced_s": [e["t"] - killed if e else None for e in lines],
        "rebalance_own_s": [float(m.group(3)) if m else None for m in own],
        "moved": [int(m.group(1)) if m else None for m in own],
        "restored_s": max(e["t"] for e in lines) - killed if all(lines) else None,  # type: ignore[union-attr]
        "count_reached_s": reached - killed,
        "sessions_lost": sum(1 for i in filled if copies[i] == 0),
        "sessions_with_1_plus_k": sum(1 for i in filled if copies[i] == 1 + BACKUPS),
        "sessions": len(filled),
    }


def restore(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== restore: SIGKILL of the member that is primary of N sessions (k={BACKUPS}), until every session has "
        f"1 + k copies again; N = {', '.join(f'{n:,}' for n in args.sizes)}, members {args.members}, "
        f"{args.rounds} rounds",
        flush=True,
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        for members in args.members:
            for size in args.sizes:
                run = one_restore(members, size, args.deadline, args.fill_window)
                samples.setdefault(f"{members}x{size}", []).append(run)
                print(
                    f"  round {round_index + 1}, {members} members, {size:,} sessions: dropped A after "
                    + "/".join(fmt_ms(t) for t in run["detected_s"])
                    + " ms; rebalanced after "
                    + "/".join(fmt_ms(t) for t in run["rebalanced_s"])
                    + f" ms (moved {run['moved']}); counts complete after {fmt_ms(run['count_reached_s'])} ms; "
                    f"{run['sessions_with_1_plus_k']:,} of {run['sessions']:,} with 1 + k copies, "
                    f"{run['sessions_lost']} lost (held {run['held_before']} -> {run['held_after']}; fill "
                    f"{run['fill_s']:.1f} s with {run['fill_send_failures']} failed sends, backed up "
                    f"{run['backed_up_after_fill_s']:.1f} s later)",
                    flush=True,
                )
    summary = {}
    rows = []
    for key, runs in samples.items():
        members, size = (int(part) for part in key.split("x"))

        def med(field: str, pick: Any = max, runs: list[dict[str, Any]] = runs) -> float:
            values = [r[field] if not isinstance(r[field], list) else pick(r[field]) for r in runs]
            return median([v for v in values if v is not None])

        s = {
            "members": members,
            "sessions": size,
            "detected_p50_s": med("detected_s"),
            "replaced_p50_s": median(
                [max(r["rebalanced_s"]) - max(r["detected_s"]) for r in runs if None not in r["rebalanced_s"]]
            ),
            "restored_p50_s": med("restored_s"),
            "restored_max_s": max((r["restored_s"] or 0.0) for r in runs),
            "count_reached_p50_s": med("count_reached_s"),
            "rebalance_own_p50_s": med("rebalance_own_s"),
            "lost": sum(r["sessions_lost"] for r in runs),
            "complete": f"{sum(r['sessions_with_1_plus_k'] for r in runs):,} of {sum(r['sessions'] for r in runs):,}",
        }
        summary[key] = s
        rows.append(
            (
                str(members),
                f"{size:,}",
                fmt_ms(s["detected_p50_s"]),
                f"{s['replaced_p50_s']:.2f}",
                f"{s['restored_p50_s']:.2f}",
                f"{s['restored_max_s']:.2f}",
                f"{s['count_reached_p50_s']:.2f}",
                s["complete"],
                str(s["lost"]),
            )
        )
    print_table(
        f"restoring 1 + k copies after SIGKILL of the primary of every session (k={BACKUPS}, median of {args.rounds})",
        (
            "members",
            "sessions",
            "detected ms",
            "re-placed s",
            "restored s",
            "max s",
            "counts s",
            "sessions with 1 + k",
            "lost",
        ),
        rows,
    )
    print(
        "\ndetected: SIGKILL until the last survivor's member_left. re-placed: from there until the last "
        "survivor's 'rebalanced ...' line (every copy it sent acknowledged). restored: SIGKILL until that line, the "
        "whole restore. counts: SIGKILL until the survivors' polled session counts added up to N * (1 + k). "
        "sessions with 1 + k: A's sessions found on exactly 1 + k survivors afterwards."
    )
    return {"settings": settings(args), "summary": summary, "samples": samples}


# -- memory -----------------------------------------------------------------------------------

SHAPES = {"5 small attributes": False, "~1 KB": True}
MANAGERS = ("backup", "delta")
ROLES = {"backup": ("primary", "backup (packed)"), "delta": ("primary", "replica")}


def _per_session(after: dict[str, Any], before: dict[str, Any], count: int) -> dict[str, float]:
    return {key: (after[key] - before[key]) / count for key in ("traced", "rss")}


def memory_round(manager: str, count: int, large: bool, traced: bool) -> dict[str, Any]:
    options = ["--manager", manager, "--backups", str(BACKUPS), *(["--tracemalloc"] if traced else [])]
    with contextlib.ExitStack() as stack:
        primary, copy = start_workers(stack, 2, options)
        before = [w.ask("stats settle", "stats") for w in (primary, copy)]
        primary.ask(f"fill {count}{' large' if large else ''}", "filled", 600)
        wait_until(lambda: counts([copy]) == [count], 120, f"{copy.route} holds {count} copies", interval=0.05)
        after = [w.ask("stats settle", "stats") for w in (primary, copy)]
        dormant = copy.ask("count", "count")["dormant"]
    role_primary, role_copy = ROLES[manager]
    return {
        role_primary: _per_session(after[0], before[0], count),
        role_copy: _per_session(after[1], before[1], count),
        "packed": dormant,
    }


def memory(args: argparse.Namespace) -> dict[str, Any]:
    serializer = SessionSerializer()
    encoded = {
        shape: len(serializer.dumps((large_session_values if large else session_values)(0)))
        for shape, large in SHAPES.items()
    }
    print(
        f"\n== memory: {args.sessions:,} sessions made on a primary, copied to a second member; "
        f"{', '.join(f'{s} ({n} B encoded)' for s, n in encoded.items())}; {args.rounds} rounds with tracemalloc "
        f"and {args.rounds} without (for RSS)",
        flush=True,
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    for traced in (True, False):
        for _ in range(args.rounds):
            for shape, large in SHAPES.items():
                for manager in MANAGERS:
                    result = memory_round(manager, args.sessions, large, traced)
                    packed = result.pop("packed")
                    for role, values in result.items():
                        key = f"{manager}|{role}|{shape}"
                        samples.setdefault(key, []).append(
                            {"traced" if traced else "rss": values["traced" if traced else "rss"], "packed": packed}
                        )
    summary = {}
    rows = []
    for key, runs in samples.items():
        manager, role, shape = key.split("|")
        traced_b = median([r["traced"] for r in runs if "traced" in r])
        rss_b = median([r["rss"] for r in runs if "rss" in r])
        s = {
            "manager": manager,
            "role": role,
            "session": shape,
            "encoded_bytes": encoded[shape],
            "traced_bytes": traced_b,
            "rss_bytes": rss_b,
            "sessions_per_gib_traced": 2**30 / traced_b,
            "sessions_per_gib_rss": 2**30 / rss_b,
            "packed_copies": min(r["packed"] for r in runs),
        }
        summary[key] = s
        rows.append(
            (
                manager,
                role,
                shape,
                f"{traced_b:,.0f}",
                f"{rss_b:,.0f}",
                f"{s['sessions_per_gib_traced'] / 1e6:.2f} M",
                f"{s['sessions_per_gib_rss'] / 1e6:.2f} M",
            )
        )
    print_table(
        f"memory per session (median of {args.rounds}; {args.sessions:,} sessions)",
        ("manager", "copy", "session", "tracemalloc B", "RSS B", "sessions/GiB (traced)", "sessions/GiB (RSS)"),
        rows,
        left=3,
    )
    print(
        "\ntracemalloc: Python allocations that remain after gc, per session, from the cluster formed to the copies "
        "all held; RSS: the resident set's growth in runs without tracemalloc (includes allocator slack). The "
        "BackupManager's backup keeps its copies packed (store.Dormant); the DeltaManager's replica, filled by "
        "deltas, holds live sessions."
    )
    return {"settings": settings(args), "summary": summary, "samples": samples, "encoded_bytes": encoded}
