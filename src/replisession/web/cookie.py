"""The session cookie: Tomcat's ``JSESSIONID=<id>.<route>``, with a signed id.

The value is ``<id><signature>.<route>``: a 24-character id, its HMAC-SHA256
signature (itsdangerous, 43 characters, key rotation through a list of keys),
then ``.`` and this member's route. Neither part contains ``.``, so a balancer
that takes the route from after the first or the last ``.`` (mod_jk,
mod_proxy_balancer, nginx ``map`` regexes written for Tomcat) finds it. Without
a route the value is the signed id alone, as Tomcat's without a jvmRoute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

from itsdangerous import Signer
from itsdangerous.encoding import base64_decode
from itsdangerous.signer import HMACAlgorithm

from ..config import CookieSettings
from ..core.ids import SESSION_ID_LENGTH

__all__ = ["DELETED_EXPIRES", "CookieId", "SessionCookieCodec", "cookie_values", "render_delete", "render_set"]

_SALT = b"replisession.session-id"
_SIGNATURE_LENGTH = 43  # base64url of a 32-byte HMAC-SHA256, unpadded
DELETED_EXPIRES = "Thu, 01 Jan 1970 00:00:00 GMT"


class CookieId(NamedTuple):
    """What a verified cookie value says."""

    session_id: str
    route: str | None
    current_key: bool  # False: signed with an older key, so worth re-signing


class SessionCookieCodec:
    """Signs session ids into cookie values and verifies them back."""

    def __init__(self, secret_keys: Iterable[str | bytes], route: str | None) -> None:
        keys = [k.encode() if isinstance(k, str) else k for k in secret_keys]  # newest first
        # itsdangerous wants the newest key last.
        self._signer = Signer(list(reversed(keys)), salt=_SALT, digest_method=hashlib.sha256)
        # Derive each key once instead of on every request.
        self._derived = [self._signer.derive_key(key) for key in keys]
        self._algorithm = HMACAlgorithm(hashlib.sha256)
        self.route = route
        self._suffix = f".{route}" if route else ""

    def encode(self, session_id: str) -> str:
        return session_id + self._signer.get_signature(session_id).decode("ascii") + self._suffix

    def decode(self, value: str) -> CookieId | None:
        """The id and route of a value this codec (with any of its keys) signed, else None."""
        token, dot, route = value.rpartition(".")
        if not dot:
            token, route = value, ""
        if len(token) != SESSION_ID_LENGTH + _SIGNATURE_LENGTH:
            return None
        session_id = token[:SESSION_ID_LENGTH]
        try:
            signature = base64_decode(token[SESSION_ID_LENGTH:])
            message = session_id.encode("ascii")
        except Exception:  # not base64 / not ASCII: forged or garbled
            return None
        for index, key in enumerate(self._derived):
            if self._algorithm.verify_signature(key, message, signature):
                return CookieId(session_id, route or None, index == 0)
        return None


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of cookie ``name`` in a ``Cookie`` header, in order.

    Browsers send the most specific path first; like Tomcat we try each value in
    turn and take the first that names a live session.
    """
    if name not in header:
        return []
    values = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
    return values


def _attributes(cookie: CookieSettings) -> str:
    parts = []
    if cookie.httponly:
        parts.append("httponly")
    if cookie.samesite:
        parts.append(f"samesite={cookie.samesite}")
    if cookie.secure:
        parts.append("secure")
    if cookie.domain is not None:
        parts.append(f"domain={cookie.domain}")
    if cookie.partitioned:
        parts.append("partitioned")
    return "; ".join(parts)


def render_set(cookie: CookieSettings, value: str) -> str:
    """A ``Set-Cookie`` value in the shape Starlette's SessionMiddleware writes."""
    max_age = f"Max-Age={cookie.max_age}; " if cookie.max_age is not None else ""
    return f"{cookie.name}={value}; path={cookie.path}; {max_age}{_attributes(cookie)}".rstrip("; ")


def render_delete(cookie: CookieSettings) -> str:
    """A ``Set-Cookie`` that expires the cookie, with the attributes it was set with."""
    return f"{cookie.name}=; path={cookie.path}; expires={DELETED_EXPIRES}; Max-Age=0; {_attributes(cookie)}".rstrip(
        "; "
    )
