"""The public API is explicit: everything in ``__all__`` exists, and nothing else is promised."""

from __future__ import annotations

import importlib

import pytest

import replisession

PUBLIC_MODULES = [
    "replisession",
    "replisession.asgi",
    "replisession.wsgi",
    "replisession.flask",
    "replisession.testing",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_in_all_is_defined(name: str) -> None:
    module = importlib.import_module(name)
    assert len(set(module.__all__)) == len(module.__all__)
    for exported in module.__all__:
        assert getattr(module, exported) is not None


def test_the_top_level_api() -> None:
    assert replisession.__all__ == [
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


def test_errors_share_one_root() -> None:
    for name in (
        "ConfigError",
        "ProtocolError",
        "SessionError",
        "SessionUnavailableError",
        "TooManySessionsError",
        "TransportError",
    ):
        assert issubclass(getattr(replisession, name), replisession.ReplisessionError)


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("replisession").joinpath("py.typed").is_file()
