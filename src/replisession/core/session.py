"""The session object: a ``dict`` that validates, tracks and reports its changes.

Flag semantics follow Starlette 1.x's ``Session`` exactly (``accessed``,
``modified``, ``mark_accessed()``, ``mark_modified()``; ``setdefault`` of an
existing key and ``pop`` of a missing key do not modify), so it is a drop-in
for ``request.session``. On top of that, and unlike Starlette, Flask or Tomcat:

* a value is serialized when it is set, so an unencodable value raises
  ``TypeError`` naming the key at the line that set it;
* when the store tracks changes (a cluster is listening), every write is
  recorded per key (Tomcat's DeltaRequest, coalesced), and a mutable value that
  was *read* is snapshotted so an in-place change (``session["cart"].append(x)``)
  is found at request end. Snapshots cost one encode per mutable value read;
  immutable values (str, int, tuples of them, ...) cost nothing.

One live object per session id is shared by every concurrent request of a
process (as Tomcat and Jetty do), so two requests writing different keys cannot
clobber each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import SessionUnavailableError
from .listeners import fire
from .serializer import SessionSerializer

if TYPE_CHECKING:
    from .store import SessionStore

__all__ = ["Session"]

_standalone_serializer = SessionSerializer()


class Session(dict[str, Any]):
    """A session: a ``dict`` of attributes plus an id and lifecycle.

    Created by a session store (never adopted from a client-chosen id). A session
    built directly, ``Session({...})``, is standalone: it validates and tracks
    flags but belongs to no store.
    """

    __slots__ = (
        "_delta",
        "_grace",
        "_holders",
        "_id",
        "_max_inactive_interval",
        "_meta_changed",
        "_previous_id",
        "_read",
        "_readonly",
        "_refused",
        "_store",
        "_was_created",
        "accessed",
        "cookie_issued_at",
        "created_at",
        "last_accessed",
        "modified",
        "new",
        "version",
    )

    #: Reads mark ``accessed`` only in subclasses that set this (the WSGI adapter's,
    #: where no framework marks the session on access). Starlette's does not.
    _reads_mark_accessed = False

    def __init__(self, data: Mapping[str, Any] | None = None, *, store: SessionStore | None = None) -> None:
        super().__init__()
        self.accessed = False
        self.modified = False
        self.new = True
        self._store = store
        self._id: str | None = None
        self._previous_id: str | None = None
        self._readonly = False
        self._refused = False  # set when the store refused to create it (max_active_sessions)
        self._holders = 0
        self._grace = 0.0  # extra idle time before a copy another member owns expires here
        self._was_created = False
        self._meta_changed = False
        self._delta: dict[str, bytes | None] | None = None
        self._read: dict[str, bytes] | None = None
        self._max_inactive_interval: float | None = None
        self.created_at: float | None = None
        self.last_accessed: float | None = None
        self.cookie_issued_at: float | None = None
        self.version = 0
        if data:
            serializer = self._serializer()
            for key, value in data.items():
                self._encode(serializer, key, value)
            dict.update(self, data)

    # -- identity and lifecycle ----------------------------------------------------

    @property
    def id(self) -> str | None:
        """The session id (without signature or route), or None until it is first written."""
        return self._id

    @property
    def max_inactive_interval(self) -> float | None:
        """Seconds of idleness after which this session expires (per-session override)."""
        if self._max_inactive_interval is None:
            return self._default_max_inactive_interval()
        return self._max_inactive_interval

    @max_inactive_interval.setter
    def max_inactive_interval(self, seconds: float | None) -> None:
        """Seconds, or None to go back to the store's default."""
        if seconds is not None and (seconds != seconds or seconds < 0):  # NaN or negative
            raise ValueError("max_inactive_interval must be a number of seconds >= 0, or None")
        self._max_inactive_interval = None if seconds is None else float(seconds)
        self._meta_changed = True
        self.mark_modified()

    def _default_max_inactive_interval(self) -> float | None:
        """The idle timeout of a session without an override of its own."""
        return self._store.policy.max_inactive_interval if self._store is not None else None

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = True
        self.modified = True

    def invalidate(self) -> None:
        """End this session now: the server copy is gone and its id is dead.

        The object is left empty and new; writing to it later in the same request
        starts a fresh session with a fresh id. The adapters expire the cookie
        (or re-issue it for the fresh session).
        """
        self.mark_modified()
        if self._store is not None and self._id is not None:
            self._store._invalidate(self)
        else:
            self._clear_attributes()

    def rotate_id(self) -> str | None:
        """Give this session a new id, keeping its data; the old id stops working.

        Call it on login (session-fixation protection). Returns the new id, or
        None when the session has no id yet (a new session gets a fresh one anyway).
        """
        self.mark_modified()
        if self._store is None or self._id is None:
            return None
        return self._store._rotate(self)

    # -- writes ----------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        encoded = self._prepare_write(key, value)
        old = dict.get(self, key, _MISSING)
        dict.__setitem__(self, key, value)
        self._record_set(key, value, encoded, old)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        self._check_writable()
        old = dict.pop(self, key)  # KeyError for a missing key, as dict
        self._record_remove(key, old)

    def clear(self) -> None:
        self.mark_modified()
        self._check_writable()
        for key, value in list(dict.items(self)):
            dict.__delitem__(self, key)
            self._record_remove(key, value)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.mark_modified()
            self._check_writable()
            value = dict.pop(self, key)
            self._record_remove(key, value)
            return value
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._check_writable()
        key, value = dict.popitem(self)
        self.mark_modified()
        self._record_remove(key, value)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
            return default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        items = dict(*args, **kwargs)
        if not items:
            return
        serializer = self._serializer()
        # Validate everything first: a bad value must not leave half an update behind.
        encoded = {key: self._encode(serializer, key, value) for key, value in items.items()}
        if self._id is None and self._store is not None and not self._readonly:
            self._store._attach(self)
        self._check_writable()
        for key, value in items.items():
            old = dict.get(self, key, _MISSING)
            dict.__setitem__(self, key, value)
            self._record_set(key, value, encoded[key], old)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    # -- reads (tracked only for nested-mutation detection) -----------------------------

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if self._reads_mark_accessed:
            self.accessed = True
        if self._read is not None and key not in self._read:
            self._snapshot(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if self._reads_mark_accessed:
            self.accessed = True
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if self._read is not None and key not in self._read:
            self._snapshot(key, value)
        return value

    def __iter__(self) -> Any:
        # Defined so that dict(session), {**session} and session | {} go through
        # __getitem__ (CPython copies a dict subclass's items directly otherwise),
        # which snapshots the mutable values those copies share.
        return dict.__iter__(self)

    def values(self):  # type: ignore[no-untyped-def]  # dict's own view type
        self._snapshot_all()
        return dict.values(self)

    def items(self):  # type: ignore[no-untyped-def]
        self._snapshot_all()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:  # a shallow copy shares the nested values
        self._snapshot_all()
        return dict(dict.items(self))

    # -- internals ---------------------------------------------------------------------

    def _serializer(self) -> SessionSerializer:
        return self._store.serializer if self._store is not None else _standalone_serializer

    @staticmethod
    def _encode(serializer: SessionSerializer, key: Any, value: Any) -> bytes:
        if type(key) is not str:
            raise TypeError(f"session keys must be str, not {type(key).__qualname__} ({key!r})")
        try:
            return serializer.dumps(value)
        except TypeError as exc:
            raise TypeError(f"cannot store session[{key!r}] = <{type(value).__qualname__}>: {exc}") from None

    def _check_writable(self) -> None:
        if self._readonly:
            raise SessionUnavailableError(
                "the session is not available on this URL: it matches the static filter "
                "(static URLs never load, create or store sessions)"
            )

    def _prepare_write(self, key: str, value: Any) -> bytes:
        self._check_writable()
        encoded = self._encode(self._serializer(), key, value)
        if self._id is None and self._store is not None:
            self._store._attach(self)  # may raise TooManySessionsError
        return encoded

    def _record_set(self, key: str, value: Any, encoded: bytes, old: Any) -> None:
        if self._delta is not None:
            self._delta[key] = encoded
        if self._read is not None:
            # A value changed in place after it was set must still be caught (WFLY-12139).
            if self._store is not None and not self._store.serializer.is_immutable(value):
                self._read[key] = encoded
            else:
                self._read.pop(key, None)
        store = self._store
        if store is not None and store.listeners:
            if old is _MISSING:
                fire(store.listeners, "attribute_added", self, key, value)
            else:
                fire(store.listeners, "attribute_replaced", self, key, old, value)

    def _record_remove(self, key: str, value: Any) -> None:
        if self._delta is not None:
            self._delta[key] = None
        if self._read is not None:
            self._read.pop(key, None)
        store = self._store
        if store is not None and store.listeners:
            fire(store.listeners, "attribute_removed", self, key, value)

    def _snapshot(self, key: str, value: Any) -> None:
        assert self._read is not None
        assert self._store is not None
        serializer = self._store.serializer
        if not serializer.is_immutable(value):
            self._read[key] = serializer.dumps(value)

    def _snapshot_all(self) -> None:
        if self._reads_mark_accessed:
            self.accessed = True
        if self._read is None:
            return
        for key, value in dict.items(self):
            if key not in self._read:
                self._snapshot(key, value)

    def _clear_attributes(self) -> None:
        dict.clear(self)
        if self._delta is not None:
            self._delta.clear()
        if self._read is not None:
            self._read.clear()


class AccessTrackingSession(Session):
    """A session whose reads mark it accessed (for adapters no framework marks it in)."""

    __slots__ = ()
    _reads_mark_accessed = True

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return dict.__contains__(self, key)

    def __len__(self) -> int:
        self.accessed = True
        return dict.__len__(self)

    def __iter__(self) -> Any:
        self.accessed = True
        return dict.__iter__(self)

    def keys(self):  # type: ignore[no-untyped-def]
        self.accessed = True
        return dict.keys(self)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
