"""Peer messages as the wire sees them: the types of :mod:`replisession.core.messages`,
re-exported so wire/ code reads ``from .messages import ...`` like its other modules."""

from ..core import messages as _core
from ..core.messages import *  # noqa: F403

__all__ = _core.__all__
