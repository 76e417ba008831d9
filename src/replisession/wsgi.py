"""``replisession.wsgi``: the WSGI middleware; the session is at ``environ["replisession.session"]``."""

from .web.wsgi import ENVIRON_KEY, SessionMiddleware

__all__ = ["ENVIRON_KEY", "SessionMiddleware"]
