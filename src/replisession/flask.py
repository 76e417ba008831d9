"""``replisession.flask``: the Flask extension (needs the ``flask`` extra)."""

from .web.flask import FlaskSession, ReplicatedSession, ReplicatedSessionInterface

__all__ = ["FlaskSession", "ReplicatedSession", "ReplicatedSessionInterface"]
