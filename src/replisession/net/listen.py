"""Claiming a listening port: bind and listen in one step.

asyncio's ``create_server(..., start_serving=False)`` binds at once and listens only when
serving starts. With SO_REUSEADDR, Linux lets two sockets bind one port as long as
neither listens, so members started together on one range (``uvicorn --workers 4``,
the demo) could both bind its first port; the later ``listen()`` fails, and uvloop
swallows that failure, leaving a member that advertises a port another process serves.
Measured: 6 processes started at once on one range under uvloop drew a duplicate in
20 of 40 rounds. Here a port counts as ours only once ``listen()`` succeeded on it.
"""

from __future__ import annotations

import asyncio
import socket

__all__ = ["BACKLOG", "bind_address", "claim"]

#: Pending connections the kernel queues before the loop accepts them (asyncio's default).
BACKLOG = 100


async def bind_address(host: str) -> tuple[socket.AddressFamily, str]:
    """The family and address to bind for ``host``: "" and "::" are every interface of
    both families (a dual-stack socket), "0.0.0.0" every IPv4 one, a name its first address."""
    if host in ("", "::"):
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, "::"
        return socket.AF_INET, "0.0.0.0"
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def claim(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    """A socket bound to ``address:port`` and listening; OSError (EADDRINUSE if taken) if not."""
    return socket.create_server(
        (address, port),
        family=family,
        backlog=BACKLOG,
        dualstack_ipv6=family == socket.AF_INET6 and address == "::",
    )
