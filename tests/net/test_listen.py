"""Claiming a listening port (net/listen.py): a port is ours once listen() succeeded on it."""

from __future__ import annotations

import errno
import socket

import pytest

from replisession.errors import TransportError
from replisession.net import tcp
from replisession.net.listen import bind_address, claim
from replisession.net.tcp import TcpTransport

from .helpers import HOST, Recorder, config, free_port_range, incarnation


@pytest.mark.asyncio
async def test_wildcards_and_names_resolve_to_one_address_to_bind() -> None:
    both = (socket.AF_INET6, "::") if socket.has_dualstack_ipv6() else (socket.AF_INET, "0.0.0.0")
    assert await bind_address("") == both
    assert await bind_address("::") == both
    assert await bind_address("0.0.0.0") == (socket.AF_INET, "0.0.0.0")
    assert await bind_address(HOST) == (socket.AF_INET, HOST)
    family, address = await bind_address("localhost")
    assert (family, address) in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))


def test_a_claimed_port_is_listening_and_a_second_claim_is_refused() -> None:
    port, _ = free_port_range(1)
    with claim(socket.AF_INET, HOST, port) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with pytest.raises(OSError, match="in use") as refused:
            claim(socket.AF_INET, HOST, port)
        assert refused.value.errno == errno.EADDRINUSE


def test_a_socket_that_bound_but_did_not_listen_yet_loses_the_port_to_a_claim() -> None:
    # Another process halfway through starting: bound with SO_REUSEADDR, not listening.
    port, _ = free_port_range(1)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind((HOST, port))
        with claim(socket.AF_INET, HOST, port):
            with pytest.raises(OSError, match="in use") as lost:
                other.listen()
            assert lost.value.errno == errno.EADDRINUSE


@pytest.mark.asyncio
async def test_a_listen_host_that_does_not_resolve_is_a_transport_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unresolvable(host: str) -> tuple[socket.AddressFamily, str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(tcp, "bind_address", unresolvable)  # no DNS lookup from the tests
    transport = TcpTransport(
        config(listen_host="member-9", listen_ports=(4000, 4000)), Recorder(), incarnation=incarnation()
    )
    with pytest.raises(TransportError, match=r"cannot listen on member-9:4000: .*Name or service not known"):
        await transport.start()
    await transport.close()
