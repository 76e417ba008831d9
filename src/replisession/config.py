"""Settings: one frozen, validated object, built in one step.

This is the only module that reads ``os.environ``. Keyword arguments win over the
environment; an invalid value fails at start with a message naming the keyword
argument or the variable it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .core.store import SessionPolicy
from .errors import ConfigError

__all__ = ["DEFAULT_STATIC_FILTER", "CookieSettings", "SessionConfig"]

#: ReplicationValve's filter: URLs that never load, create or store a session.
#: Tomcat ships none; the seeds all add one like this by hand.
DEFAULT_STATIC_FILTER = r".*\.(?:css|js|mjs|map|png|jpe?g|gif|svg|webp|avif|ico|bmp|woff2?|ttf|otf|eot)$"

_ROUTE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 6265 token
#: An absolute URL path of non-empty segments of RFC 3986 path characters: no query,
#: fragment, space or trailing slash, so it compares equal to what servers put in PATH_INFO.
_METRICS_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")
#: Marks an argument the caller did not give (so the environment may supply it).
UNSET: Any = object()

SameSite = Literal["lax", "strict", "none"]


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Attributes of the session cookie (Tomcat's defaults where they differ from Starlette's)."""

    name: str = "JSESSIONID"
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: SameSite | None = "lax"
    partitioned: bool = False
    max_age: int | None = None  # None: a browser-session cookie, as Tomcat's

    def __post_init__(self) -> None:
        if not _COOKIE_NAME.fullmatch(self.name):
            raise ConfigError(f"session_cookie {self.name!r} is not a valid cookie name")
        if self.samesite is not None and self.samesite not in ("lax", "strict", "none"):
            raise ConfigError(f"same_site must be 'lax', 'strict' or 'none', not {self.samesite!r}")
        if self.max_age is not None and not isinstance(self.max_age, int):
            raise ConfigError(f"max_age must be an integer number of seconds or None, not {self.max_age!r}")
        for label, value in (("path", self.path), ("domain", self.domain or "")):
            if any(ch in value for ch in ";\r\n"):
                raise ConfigError(f"cookie {label} {value!r} contains a forbidden character")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything one adapter instance needs, resolved from arguments and environment."""

    secret_keys: tuple[str, ...]
    route: str | None
    cookie: CookieSettings
    policy: SessionPolicy
    static_filter: re.Pattern[str] | None
    sweep_interval: float
    metrics_path: str | None = None  # where the member's metrics are served; None: nowhere

    @classmethod
    def build(
        cls,
        *,
        secret_key: Any = None,
        route: str | None = None,
        cookie: CookieSettings | None = None,
        max_inactive_interval: float | None = UNSET,
        max_lifetime: float | None = None,
        max_active_sessions: int | None = None,
        detect_mutations: bool = True,
        static_filter: str | re.Pattern[str] | None = DEFAULT_STATIC_FILTER,
        sweep_interval: float = 60.0,
        metrics_path: str | None = UNSET,
        environ: Mapping[str, str] | None = None,
    ) -> SessionConfig:
        env = os.environ if environ is None else environ
        if max_inactive_interval is UNSET:
            max_inactive_interval = _env_seconds(env, "REPLISESSION_MAX_INACTIVE_INTERVAL", 1800.0)
        cookie = cookie or CookieSettings()
        if cookie.max_age is not None and max_inactive_interval is not None:
            # Starlette's max_age bounds how long a session lives; here it bounds the
            # idle timeout (<= 0: already expired on the next request).
            max_inactive_interval = min(float(max_inactive_interval), float(max(cookie.max_age, 0)))
        elif cookie.max_age is not None:
            max_inactive_interval = float(max(cookie.max_age, 0))
        if not isinstance(sweep_interval, int | float) or sweep_interval <= 0:
            raise ConfigError(f"sweep_interval must be a positive number of seconds, not {sweep_interval!r}")
        return cls(
            secret_keys=_secret_keys(secret_key, env),
            route=_route(route, env),
            cookie=cookie,
            policy=SessionPolicy(
                max_inactive_interval=max_inactive_interval,
                max_lifetime=max_lifetime,
                max_active_sessions=max_active_sessions,
                detect_mutations=detect_mutations,
            ),
            static_filter=_static_filter(static_filter),
            sweep_interval=float(sweep_interval),
            metrics_path=_metrics_path(metrics_path, env),
        )


def _secret_keys(secret_key: Any, env: Mapping[str, str]) -> tuple[str, ...]:
    """Newest key first; older keys still verify cookies (key rotation).

    ``()`` means the framework holds the keys (Flask's ``SECRET_KEY``).
    """
    if secret_key == ():
        return ()
    if secret_key is None:
        newest = env.get("REPLISESSION_SECRET_KEY", "")
        if not newest:
            raise ConfigError("no secret key: pass secret_key= or set REPLISESSION_SECRET_KEY")
        fallbacks = [k for k in env.get("REPLISESSION_SECRET_KEY_FALLBACKS", "").split(",") if k]
        return (newest, *fallbacks)
    keys: Sequence[Any] = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    resolved = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in keys)  # str() unwraps starlette's Secret
    if not resolved or not all(resolved):
        raise ConfigError("secret_key must be a non-empty string or a list of them, newest first")
    return resolved


def _route(route: str | None, env: Mapping[str, str]) -> str | None:
    source = "route"
    if route is None:
        route, source = env.get("REPLISESSION_ROUTE") or None, "REPLISESSION_ROUTE"
    if route is not None and not _ROUTE.fullmatch(route):
        raise ConfigError(
            f"{source} {route!r} is not a valid route: use 1-64 letters, digits, '-' or '_' "
            "(no '.', which separates the route from the session id in the cookie)"
        )
    return route


def _metrics_path(path: str | None, env: Mapping[str, str]) -> str | None:
    """The opt-in URL path of the metrics endpoint; off unless given."""
    source = "metrics_path"
    if path is UNSET:
        path, source = env.get("REPLISESSION_METRICS_PATH", "").strip() or None, "REPLISESSION_METRICS_PATH"
    if path is None:
        return None
    if not isinstance(path, str) or not _METRICS_PATH.fullmatch(path):
        raise ConfigError(
            f"{source} {path!r} is not a URL path for the metrics: start it with '/', as in "
            "/replisession/metrics, without a query, '#', spaces, empty segments or a trailing '/'"
        )
    return path


def _env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value != value or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _static_filter(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"static_filter {pattern!r} is not a valid regular expression: {exc}") from exc
