"""The failure detector's probe: a bare TCP connect, closed at once."""

from __future__ import annotations

import asyncio

import pytest

from replisession.net import probe

from .helpers import HOST, closed_port, config, members


@pytest.mark.asyncio
async def test_a_listening_member_answers_and_does_not_notice() -> None:
    async with members(config()) as (a,):
        assert await probe(a.info.address, 1.0) is True
        await asyncio.wait_for(asyncio.gather(*(c.lost for c in a.transport._connections)), 5.0)
        assert a.recorder.events == []


@pytest.mark.asyncio
async def test_a_closed_port_does_not_answer() -> None:
    assert await probe((HOST, closed_port()), 1.0) is False


@pytest.mark.asyncio
async def test_a_name_that_does_not_resolve_does_not_answer() -> None:
    assert await probe(("no-such-host.invalid", 4000), 1.0) is False


# A probe that times out needs a host that drops SYNs, which loopback does not: not tested.
