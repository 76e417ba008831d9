"""What a replication manager asks its node to send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .messages import MemberInfo

__all__ = ["Outgoing"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for the node to send: to ``targets`` (None: every member)."""

    kind: str
    payload: Any
    targets: tuple[MemberInfo, ...] | None = None
    wait: bool = True  # False: never worth delaying a response for (access notices)
