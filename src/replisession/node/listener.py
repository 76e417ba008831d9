"""What a cluster member tells about membership: :class:`ClusterListener`.

A module of its own, apart from the member: applications subclass it, so it stays plain
Python even where the member's modules are compiled (a compiled class cannot be
subclassed by interpreted code).
"""

from __future__ import annotations

from ..core.messages import MemberInfo

__all__ = ["ClusterListener"]


class ClusterListener:
    """Membership events. Every method is a no-op until overridden; called on the member thread."""

    def member_joined(self, member: MemberInfo) -> None:
        """A member completed the authenticated handshake and joined."""

    def member_suspected(self, member: MemberInfo) -> None:
        """A member went silent; it is being verified."""

    def member_left(self, member: MemberInfo, reason: str) -> None:
        """A member left: ``"left"`` (graceful), ``"crashed"``, ``"restarted"`` or ``"unresponsive"``."""
