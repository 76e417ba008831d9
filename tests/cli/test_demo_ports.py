"""Ports for servers the demo (and the test suite) start: free, and outside the range the
kernel takes the local ports of outgoing connections from, so that no connection a running
member opens can take one between the choice and the server's bind."""

from __future__ import annotations

import socket
from pathlib import Path

from replisession.cli.demo_cluster import candidate_ports, free_port, free_port_range, port_is_free


def outgoing_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_candidates_avoid_the_range_of_outgoing_connections() -> None:
    low, high = outgoing_range()
    candidates = candidate_ports(4)
    assert len(candidates) == len(set(candidates)) > 0
    for first in candidates:
        assert all(not low <= port <= high for port in range(first, first + 4)), first
        assert 20000 <= first
        assert first + 3 <= 65535


def test_free_ports_are_free_and_outside_that_range() -> None:
    low, high = outgoing_range()
    port = free_port()
    assert not low <= port <= high
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # really free
        sock.listen()
        assert not port_is_free("127.0.0.1", port)  # and a listening port is not
    first, last = free_port_range(3)
    assert last == first + 2
    assert all(port_is_free("127.0.0.1", p) and not low <= p <= high for p in range(first, last + 1))


def test_a_port_is_handed_out_once_though_nothing_bound_it_yet() -> None:
    # Servers get their ports before any of them binds: a port still free must not be chosen
    # twice (two cluster members were once given one HTTP port, and one failed to start).
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    ranges = [free_port_range(4) for _ in range(30)]
    in_ranges = [port for first, last in ranges for port in range(first, last + 1)]
    assert len(set(in_ranges)) == len(in_ranges)
    assert not set(in_ranges) & set(ports)
