"""Shared fixtures. Keep this file small: test modules hold their own helpers."""

from __future__ import annotations

import pytest

from replisession.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
