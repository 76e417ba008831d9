"""Membership across real processes on loopback: one seed is enough, SIGKILL is detected
within the configured time, a restarted member is recognised as new, SIGTERM leaves at once."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import free_port

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("member_process.py")
HEARTBEAT, DROP, PROBE = 0.2, 1.0, 0.5


class Member:
    def __init__(self, route: str, port: int, seeds: str) -> None:
        env = {
            **os.environ,
            "REPLISESSION_ROUTE": route,
            "REPLISESSION_LISTEN": f"127.0.0.1:{port}",
            "REPLISESSION_MEMBERS": seeds,
            "REPLISESSION_CLUSTER_SECRET": "membership-test-secret",
            "REPLISESSION_HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "REPLISESSION_DROP_TIME": str(DROP),
            "REPLISESSION_PROBE_TIMEOUT": str(PROBE),
        }
        self.route = route
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        try:
            self.started = self.wait_for(lambda e: e["event"] == "started")
        except BaseException:  # not yet in the fixture's list: stopped here, not leaked
            self.stop(signal.SIGKILL)
            raise

    def _read(self, timeout: float) -> None:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if selector.select(timeout):
                self._buffer += self.process.stdout.read() or b""
        *lines, self._buffer = self._buffer.split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line)

    def wait_for(self, predicate: Any, deadline: float = 15.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        seen = 0
        while time.monotonic() < end:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if self.process.poll() is not None:
                raise AssertionError(f"{self.route} exited with {self.process.returncode}: {self.events}")
            self._read(0.1)
        raise AssertionError(f"{self.route}: no matching event within {deadline}s; saw {self.events}")

    def peers(self) -> set[str]:
        """Routes this member currently counts as members, from its event log."""
        present: dict[str, str] = {}
        for event in self.events:
            if event["event"] == "joined":
                present[event["incarnation"]] = event["route"]
            elif event["event"] == "left":
                present.pop(event["incarnation"], None)
        return set(present.values())

    def wait_peers(self, routes: set[str], deadline: float = 15.0) -> None:
        end = time.monotonic() + deadline
        while self.peers() != routes:
            if time.monotonic() > end:
                raise AssertionError(f"{self.route} sees {self.peers()}, expected {routes}: {self.events}")
            self._read(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for member in started:
        member.stop(signal.SIGKILL)


def test_three_processes_from_one_seed_crash_restart_and_leave(members: list[Member]) -> None:
    ports = [free_port() for _ in range(3)]
    seed = f"127.0.0.1:{ports[0]}"  # one seed, listed in every member's configuration (its own too)
    a, b, c = (Member(route, port, seed) for route, port in zip(("node1", "node2", "node3"), ports, strict=True))
    members.extend([a, b, c])
    for member, others in ((a, {"node2", "node3"}), (b, {"node1", "node3"}), (c, {"node1", "node2"})):
        member.wait_peers(others)  # node2 and node3 found each other through node1's gossip

    b.process.kill()  # SIGKILL
    killed_at = time.monotonic()
    for survivor in (a, c):
        survivor.wait_for(lambda e: e["event"] == "left" and e["route"] == "node2", deadline=DROP + PROBE + 5)
    detection = time.monotonic() - killed_at
    assert detection < DROP + PROBE + 1.0, f"SIGKILL noticed after {detection:.2f}s"
    assert {e["reason"] for m in (a, c) for e in m.events if e["event"] == "left"} == {"crashed"}

    restarted = Member("node2", ports[1], seed)
    members.append(restarted)
    assert restarted.started["incarnation"] != b.started["incarnation"]
    for member in (a, c):
        member.wait_for(lambda e: e["event"] == "joined" and e["incarnation"] == restarted.started["incarnation"])
    restarted.wait_peers({"node1", "node3"})

    c.stop(signal.SIGTERM)  # graceful: announced, removed at once without a probe
    for member in (a, restarted):
        left = member.wait_for(lambda e: e["event"] == "left" and e["route"] == "node3", deadline=DROP)
        assert left["reason"] == "left"
