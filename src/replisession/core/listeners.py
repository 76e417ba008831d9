"""Session lifecycle and attribute listeners (Tomcat's HttpSessionListener and
HttpSessionAttributeListener, in one class).

Subclass :class:`SessionListener`, override what you need, and pass instances to
the middleware's ``listeners=``. A listener that raises is logged and skipped:
one faulty listener must not fail the request or stop the others.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Session

__all__ = ["DestroyReason", "SessionListener"]

log = logging.getLogger("replisession.listeners")


class DestroyReason(enum.Enum):
    """Why a session ended."""

    EXPIRED = "expired"
    """Idle for longer than its ``max_inactive_interval``, or past its absolute lifetime."""

    INVALIDATED = "invalidated"
    """Ended by the application: ``invalidate()``, or emptied with ``clear()``."""


class SessionListener:
    """Callbacks for session events. Every method is a no-op until overridden."""

    def session_created(self, session: Session) -> None:
        """A new session got its id (at its first write)."""

    def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
        """A session ended; its attributes are still readable here."""

    def attribute_added(self, session: Session, key: str, value: Any) -> None:
        """``key`` was set and did not exist before."""

    def attribute_replaced(self, session: Session, key: str, old_value: Any, new_value: Any) -> None:
        """``key`` was set and held ``old_value`` before."""

    def attribute_removed(self, session: Session, key: str, value: Any) -> None:
        """``key`` (holding ``value``) was removed."""


def fire(listeners: Sequence[SessionListener], event: str, *args: Any) -> None:
    """Call ``event`` on every listener, logging (not raising) what they raise."""
    for listener in listeners:
        try:
            getattr(listener, event)(*args)
        except Exception:
            log.exception("session listener %r failed in %s", listener, event)
