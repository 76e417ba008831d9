"""``replisession.asgi``: the ASGI middleware for Starlette and FastAPI."""

from .web.asgi import SessionMiddleware

__all__ = ["SessionMiddleware"]
