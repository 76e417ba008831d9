"""The session value serializer: msgpack plus extension types.

Every value put into a session is encoded here at the moment it is set, so an
unencodable value fails at the ``session[key] = value`` line rather than at
request end or, worse, on a replica (Tomcat's weak point 10). The same bytes are
what replication sends, so the check costs nothing extra there.

``strict_types`` is on: subclasses of the built-in types (``IntEnum``,
``OrderedDict``, ``markupsafe.Markup``...) are not silently flattened to their
base type but must be registered, so what comes back is what went in. The one
exception is msgpack's own: ``bytearray`` and ``memoryview`` are packed as binary
before any hook runs, and come back as ``bytes``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["SessionSerializer", "UnsupportedTypeError"]

# Extension codes. 0-31 are ours; application types all share _EXT_APP and are
# told apart by their registered name, so two libraries cannot clash on a code.
_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_DATETIME = 4
_EXT_DATE = 5
_EXT_TIME = 6
_EXT_UUID = 7
_EXT_DECIMAL = 8
_EXT_BIGINT = 9
_EXT_APP = 32

_SCALARS: frozenset[type] = frozenset(
    {type(None), bool, int, float, str, bytes, dt.datetime, dt.date, dt.time, uuid.UUID, decimal.Decimal}
)


class UnsupportedTypeError(TypeError):
    """A value (or something nested in it) has a type the serializer cannot encode."""

    def __init__(self, value_type: type) -> None:
        self.value_type = value_type
        name = f"{value_type.__module__}.{value_type.__qualname__}"
        if value_type.__module__ == "builtins":
            name = value_type.__qualname__
        super().__init__(f"{name} is not serializable (register it with SessionSerializer.register)")


@dataclass(frozen=True, slots=True)
class _Registration:
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    immutable: bool


def _zone_key(value: dt.datetime | dt.time) -> str | None:
    key = getattr(value.tzinfo, "key", None)  # zoneinfo.ZoneInfo keeps its IANA name
    return key if isinstance(key, str) else None


class SessionSerializer:
    """Encodes session values to msgpack bytes and back, keeping their Python types.

    Built in: ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``,
    ``list``, ``dict`` (any encodable keys), ``tuple``, ``set``, ``frozenset``,
    ``datetime``/``date``/``time`` (naive or aware), ``UUID`` and ``Decimal``.
    Application types are added with :meth:`register`.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, _Registration] = {}
        self._by_name: dict[str, _Registration] = {}

    def register(
        self,
        cls: type,
        name: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        *,
        immutable: bool = False,
    ) -> None:
        """Teach the serializer an application type.

        ``encode(value)`` returns something this serializer can encode (it may use
        other registered types); ``decode(data)`` rebuilds the value. ``name`` goes
        on the wire, so it must stay the same across every member of a cluster.
        ``immutable=True`` lets nested-mutation detection skip values of this type.
        """
        if not name or not isinstance(name, str):
            raise ValueError("a registered type needs a non-empty string name")
        if name in self._by_name and self._by_name[name] is not self._by_type.get(cls):
            raise ValueError(f"the serializer name {name!r} is already registered")
        registration = _Registration(name, encode, decode, immutable)
        self._by_type[cls] = registration
        self._by_name[name] = registration

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raises :class:`TypeError` for anything unencodable."""
        try:
            return self._pack(value)
        except UnsupportedTypeError:
            raise
        except (ValueError, OverflowError, RecursionError) as exc:  # too deep, self-referencing, ...
            raise TypeError(f"value cannot be serialized: {exc}") from exc

    def packer(self) -> Callable[[Any], bytes]:
        """A :meth:`dumps` for many values in a row from one thread (a state transfer):
        one reusable msgpack packer, without the per-call setup. Not thread-safe."""
        packer = msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)

        def pack(value: Any) -> bytes:
            try:
                packed: bytes = packer.pack(value)
            except UnsupportedTypeError:
                packer.reset()
                raise
            except (ValueError, OverflowError, RecursionError) as exc:
                packer.reset()
                raise TypeError(f"value cannot be serialized: {exc}") from exc
            return packed

        return pack

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps` (by this or an identically configured serializer)."""
        return msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)

    def is_immutable(self, value: Any) -> bool:
        """True when ``value`` cannot change in place, so reading it needs no snapshot."""
        kind = type(value)
        if kind in _SCALARS:
            return True
        if kind is tuple or kind is frozenset:
            return all(self.is_immutable(item) for item in value)
        registration = self._by_type.get(kind)
        return registration is not None and registration.immutable

    # -- msgpack hooks -------------------------------------------------------------

    def _pack(self, value: Any) -> bytes:
        packed: bytes = msgpack.packb(value, default=self._default, use_bin_type=True, strict_types=True)
        return packed

    def _default(self, value: Any) -> Any:
        kind = type(value)
        if kind is tuple:
            return msgpack.ExtType(_EXT_TUPLE, self._pack(list(value)))
        if kind is set:
            return msgpack.ExtType(_EXT_SET, self._pack(list(value)))
        if kind is frozenset:
            return msgpack.ExtType(_EXT_FROZENSET, self._pack(list(value)))
        if kind is dt.datetime:
            return msgpack.ExtType(_EXT_DATETIME, self._pack(_clock_parts(value)))
        if kind is dt.date:
            return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
        if kind is dt.time:
            return msgpack.ExtType(_EXT_TIME, self._pack(_clock_parts(value)))
        if kind is uuid.UUID:
            return msgpack.ExtType(_EXT_UUID, value.bytes)
        if kind is decimal.Decimal:
            return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
        if kind is int:  # msgpack calls us only for ints beyond 64 bits
            return msgpack.ExtType(_EXT_BIGINT, str(value).encode())
        registration = self._by_type.get(kind)
        if registration is not None:
            return msgpack.ExtType(_EXT_APP, self._pack([registration.name, registration.encode(value)]))
        raise UnsupportedTypeError(kind)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _EXT_TUPLE:
            return tuple(self.loads(data))
        if code == _EXT_SET:
            return set(self.loads(data))
        if code == _EXT_FROZENSET:
            return frozenset(self.loads(data))
        if code == _EXT_DATETIME:
            text, offset, zone, fold = self.loads(data)
            return _with_zone(dt.datetime.fromisoformat(text), offset, zone, fold)
        if code == _EXT_DATE:
            return dt.date.fromisoformat(data.decode())
        if code == _EXT_TIME:
            text, offset, zone, fold = self.loads(data)
            return _with_zone(dt.time.fromisoformat(text), offset, zone, fold)
        if code == _EXT_UUID:
            return uuid.UUID(bytes=data)
        if code == _EXT_DECIMAL:
            return decimal.Decimal(data.decode())
        if code == _EXT_BIGINT:
            return int(data.decode())
        if code == _EXT_APP:
            name, payload = self.loads(data)
            registration = self._by_name.get(name)
            if registration is None:
                raise ValueError(f"session data holds an unregistered type {name!r}")
            return registration.decode(payload)
        raise ValueError(f"unknown msgpack extension code {code}")


def _clock_parts(value: dt.datetime | dt.time) -> list[Any]:
    """``[naive isoformat, UTC offset in seconds or None, zoneinfo key or None, fold]``.

    The offset is carried as a number because ``fromisoformat`` drops sub-second
    offsets, and ``fold`` because it tells the two 02:30s of a DST change apart.
    """
    offset = value.utcoffset()
    return [
        value.replace(tzinfo=None).isoformat(),
        None if offset is None else offset.total_seconds(),
        _zone_key(value),
        value.fold,
    ]


def _with_zone(value: Any, offset: float | None, zone: str | None, fold: int) -> Any:
    if zone is not None:
        from zoneinfo import ZoneInfo  # only for values that were stored with a zone name

        return value.replace(tzinfo=ZoneInfo(zone), fold=fold)
    if offset is not None:
        return value.replace(tzinfo=dt.timezone(dt.timedelta(seconds=offset)), fold=fold)
    return value.replace(fold=fold)
