"""Tomcat's TcpFailureDetector check: does anything still accept TCP connections there?

A member that went silent is only removed once a bare TCP connect to its peer port
fails. A connect that succeeds is closed at once, before any byte is sent: the peer
sees a connection that ends before its handshake, which it drops without a word (and,
with TLS, its TLS layer drops it before the peer channel ever sees it).
"""

from __future__ import annotations

import asyncio
import logging
import socket

__all__ = ["probe"]

logger = logging.getLogger("replisession.net")


async def probe(address: tuple[str, int], timeout: float) -> bool:  # noqa: ASYNC109 (the failure detector sets it per call)
    """True iff a TCP connection to ``address`` is accepted within ``timeout`` seconds."""
    host, port = address
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, sockaddr = infos[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
    except (OSError, TimeoutError) as exc:
        logger.debug("probe of %s:%s failed: %s", host, port, exc or type(exc).__name__)
        return False
    return True
