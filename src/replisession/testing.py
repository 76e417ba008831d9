"""Public test helpers: a fake clock to drive expiry deterministically.

Pass ``clock=FakeClock()`` to any adapter, then ``advance()`` it instead of
sleeping. (The in-memory network for cluster tests joins this module with the
peer channel.)
"""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
        return self._now
