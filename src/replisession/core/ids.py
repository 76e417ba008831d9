"""Session ids.

An id is 144 random bits from :mod:`secrets`, URL-safe base64 without padding:
24 characters of ``[A-Za-z0-9_-]``. It never contains ``.``, so in the cookie
``<id><signature>.<route>`` the route is everything after the last ``.``, as
nginx, HAProxy and Apache httpd configurations written for Tomcat expect.
"""

from __future__ import annotations

import secrets

__all__ = ["SESSION_ID_LENGTH", "new_session_id"]

_ID_BYTES = 18
SESSION_ID_LENGTH = 24  # characters of base64url for 18 bytes, no padding


def new_session_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)
