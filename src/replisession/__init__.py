"""replisession: server-side sessions that survive the death of a process.

Tomcat's session clustering (DeltaManager, ReplicationValve, JvmRouteBinderValve)
for Starlette/FastAPI (``SessionMiddleware``), Flask (``replisession.flask``) and
any WSGI app (``replisession.wsgi``).
"""

from .cluster_config import ClusterConfig
from .config import DEFAULT_STATIC_FILTER, CookieSettings, SessionConfig
from .core.delta import SessionDelta
from .core.listeners import DestroyReason, SessionListener
from .core.serializer import SessionSerializer
from .core.session import Session
from .errors import (
    ConfigError,
    ProtocolError,
    ReplisessionError,
    SessionError,
    SessionUnavailableError,
    TooManySessionsError,
    TransportError,
)
from .node import ClusterListener
from .web.asgi import SessionMiddleware

__all__ = [
    "DEFAULT_STATIC_FILTER",
    "ClusterConfig",
    "ClusterListener",
    "ConfigError",
    "CookieSettings",
    "DestroyReason",
    "ProtocolError",
    "ReplisessionError",
    "Session",
    "SessionConfig",
    "SessionDelta",
    "SessionError",
    "SessionListener",
    "SessionMiddleware",
    "SessionSerializer",
    "SessionUnavailableError",
    "TooManySessionsError",
    "TransportError",
]

__version__ = "0.1.0"
