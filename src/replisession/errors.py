"""One exception tree for the whole package, rooted at :class:`ReplisessionError`.

Foreign exceptions are converted once, at the boundary where they enter, with
``raise ... from``.
"""

from __future__ import annotations


class ReplisessionError(Exception):
    """Base class of every error replisession raises on purpose."""


class ConfigError(ReplisessionError, ValueError):
    """A setting (keyword argument or environment variable) is invalid.

    The message names the setting, so a bad deployment fails at start with a
    line that says what to fix.
    """


class SessionError(ReplisessionError):
    """A session operation cannot be carried out."""


class TooManySessionsError(SessionError):
    """A new session was refused because ``max_active_sessions`` is reached.

    The adapters answer the request with 503; existing sessions keep working.
    """


class SessionUnavailableError(SessionError):
    """The session was used where it is switched off (a static URL)."""


class ProtocolError(ReplisessionError):
    """Bytes or messages that break the peer protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol does not allow."""


class TransportError(ReplisessionError):
    """The peer channel could not deliver a message."""
