"""Which requests touch sessions: Tomcat's ReplicationValve ``filter``.

A URL the filter matches (static files by default) never loads, creates or
stores a session, and so never costs a lookup or a replication message.
"""

from __future__ import annotations

import re

__all__ = ["ReplicationValve"]


class ReplicationValve:
    def __init__(self, static_filter: re.Pattern[str] | None) -> None:
        self._filter = static_filter

    def is_static(self, path: str) -> bool:
        """True for a path the filter fully matches (Tomcat matches the whole URI too)."""
        return self._filter is not None and self._filter.fullmatch(path) is not None
