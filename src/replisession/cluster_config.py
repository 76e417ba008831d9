"""Cluster settings: who this member is, where it listens, how it finds its peers.

Part of the config layer, with :mod:`.config` (which owns the session settings): it
may be imported from anywhere, imports nothing from node, net or web, and is, with
:mod:`.config`, the only module that reads ``os.environ``. Building a
:class:`ClusterConfig` checks everything (and that the TLS files exist) but opens no
socket; binding is the channel's job.

Every invalid value fails at construction with a :class:`~.errors.ConfigError` that
names the keyword argument, or, from :meth:`ClusterConfig.from_env`, the environment
variable, together with the bad value. The cluster secret is never shown.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .config import _route
from .errors import ConfigError

__all__ = ["SEND_FAILURES", "SEND_MODES", "ClusterConfig", "Seed"]

SEND_MODES = ("async", "ack", "sync")
SEND_FAILURES = ("log", "fail")
MANAGERS = ("delta", "backup")

KiB = 1024
MiB = 1024 * KiB

#: A port range is a few worker processes' ports on one host (Tomcat's autoBind is
#: 100), not a port scan: a wider range is a typo, and would cost a dial per port.
MAX_PORT_RANGE = 1024
MIN_FRAME_SIZE = 64 * KiB
#: A frame is buffered whole before it is checked, so this bounds what one peer can
#: make us allocate; beyond it the setting is a mistake (and outgrows a 32-bit length).
MAX_FRAME_SIZE = 1024 * MiB
MAX_CLUSTER_NAME = 128  # the HELLO message's limit

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # '_': Docker Compose service names
_ADDRESS = re.compile(r"(?:\[([^\[\]]+)\]|([^\[\]:]+)):([0-9]{1,5})(?:-([0-9]{1,5}))?")
_LISTEN_FORM = "HOST:PORT or HOST:FIRST-LAST"
_MULTICAST_FORM = "GROUP:PORT"
_IPV4_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")


@dataclass(frozen=True, slots=True)
class Seed:
    """One ``REPLISESSION_MEMBERS`` entry: a host and the ports (inclusive) to dial there.

    A range serves several worker processes on one host, each bound to the first free
    port of the same listen range (Tomcat's autoBind).
    """

    host: str
    first_port: int
    last_port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not _is_int(self.first_port) or not _is_int(self.last_port):
            raise ConfigError(f"{self!r} needs a host string and integer ports")
        problem = _host_problem(self.host) or _ports_problem(self.first_port, self.last_port, lowest=1)
        if problem:
            raise ConfigError(f"seed {str(self)!r}: {problem}")

    def __str__(self) -> str:
        return _format_address(self.host, self.first_port, self.last_port)

    def addresses(self) -> list[tuple[str, int]]:
        """Every address of the range, lowest port first (at most :data:`MAX_PORT_RANGE`)."""
        return [(self.host, port) for port in range(self.first_port, self.last_port + 1)]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ClusterConfig:
    """How this member joins a cluster: Tomcat's ``<Cluster>`` element, in one object.

    With neither ``members`` nor ``multicast`` the member stays alone (``enabled`` is
    False): a route alone does not make a cluster. ``secret`` accepts ``str`` (encoded
    as UTF-8) or ``bytes``; an empty one means none.
    """

    route: str | None = None  # Tomcat's jvmRoute: the cookie suffix that routes back here
    listen_host: str = "127.0.0.1"
    listen_ports: tuple[int, int] = (4000, 4100)  # inclusive; binds the first free (autoBind); (0, 0): any
    members: tuple[Seed, ...] = ()  # static seeds; our own address may be among them
    multicast: tuple[str, int] | None = None  # (group, port): discovery instead of seeds
    secret: bytes | None = None  # authenticates every peer; required off loopback
    cluster_name: str = "replisession"  # members of another cluster name are refused
    heartbeat_interval: float = 0.5  # McastService frequency
    drop_time: float = 3.0  # McastService dropTime: silence before a member is suspected
    probe_timeout: float = 1.0  # TcpFailureDetector's connect/read test
    send_timeout: float = 3.0  # Tribes' timeout (3000 ms)
    max_frame_size: int = 16 * MiB
    compress_threshold: int | None = None  # compress frames above this many bytes; None: never
    send_queue_bytes: int = 8 * MiB  # per peer, for async sends
    async_linger: float = 0.0  # async sends may wait this long to share a write with later ones
    tls_cert: str | None = None  # mutual TLS: our certificate chain (PEM),
    tls_key: str | None = None  # its private key,
    tls_ca: str | None = None  # and the CA that signed the peers' certificates
    # Replication (the DeltaManager):
    send_mode: str = "sync"  # async | ack | sync: when a request's changes count as replicated
    send_failure: str = "log"  # log | fail: a member that does not answer in time (fail: 503)
    notify_listeners_on_replication: bool = True  # Tomcat's notifyListenersOnReplication
    manager: str = "delta"  # delta: every member holds every session; backup: a primary and `backups` others
    backups: int = 1  # copies besides the primary (manager="backup")

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in _validated(values, _Names()).items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'<hidden>' if f.name == 'secret' and value is not None else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def enabled(self) -> bool:
        """True when this member looks for peers (seeds or multicast)."""
        return bool(self.members) or self.multicast is not None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def seed_addresses(self, own: tuple[str, int]) -> list[tuple[str, int]]:
        """Every seed address to dial, in order, without duplicates and without ``own``.

        ``own`` is the address this member bound. One seed list serves every member,
        so it usually holds our own address: dialing it would be talking to ourselves.
        Only what can be told without resolving names is recognised (``localhost`` is
        127.0.0.1; bound to 0.0.0.0 or ::, a loopback seed on our port is us); the
        channel must still notice a dial that reaches itself under another name.
        """
        own_host, own_port = _normal_host(own[0]), own[1]
        wildcard = own_host in ("0.0.0.0", "::")
        seen: set[tuple[str, int]] = set()
        addresses = []
        for seed in self.members:
            for host, port in seed.addresses():
                key = (_normal_host(host), port)
                if key in seen or (port == own_port and (key[0] == own_host or (wildcard and _is_loopback(key[0])))):
                    continue
                seen.add(key)
                addresses.append((host, port))
        return addresses

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClusterConfig:
        """Read the ``REPLISESSION_*`` variables (from ``os.environ`` by default).

        Overrides take the field names, except ``listen`` (a ``HOST:PORT[-LAST]`` string)
        for ``listen_host`` and ``listen_ports``, and win over the environment, even
        when ``None``. A string override is read exactly
        like the variable; any other value is taken as the constructor takes it. An empty
        (or blank) value means the default.
        """
        unknown = sorted(set(overrides) - set(_SETTINGS))
        if unknown:
            raise TypeError(f"from_env() got unexpected keyword arguments: {', '.join(unknown)}")
        env = os.environ if environ is None else environ
        values = {f.name: f.default for f in fields(cls)}
        labels: dict[str, str] = {}
        texts: dict[str, str] = {}
        for key, setting in _SETTINGS.items():
            name = key if key in overrides else setting.variable
            labels.update(dict.fromkeys(setting.fields, name))
            value = overrides[key] if key in overrides else env.get(setting.variable, "")
            if isinstance(value, str):
                if not value.strip():
                    continue
                texts.update(dict.fromkeys(setting.fields, value))
                value = setting.parse(value, name)
            elif len(setting.fields) > 1:
                raise ConfigError(f"{name}={value!r} must be a {_LISTEN_FORM} string")
            values.update(zip(setting.fields, value if len(setting.fields) > 1 else (value,), strict=True))
        return cls(**_validated(values, _Names(labels, texts)))


# -- from the environment: one parser per variable ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    variable: str
    parse: Callable[[str, str], Any]  # (text, name for errors) -> value; ranges are _validated's
    fields: tuple[str, ...]


class _Malformed(Exception):
    """An address that does not even parse; the caller says which setting it was."""


def _split_address(text: str, form: str) -> tuple[str, int, int]:
    match = _ADDRESS.fullmatch(text)
    if match is None:
        if text.count(":") > 1 and not text.startswith("["):
            raise _Malformed("an IPv6 address needs brackets, as in [::1]:4000")
        raise _Malformed(f"expected {form}")
    bracketed, plain, first, last = match.groups()
    if last is not None and form == _MULTICAST_FORM:
        raise _Malformed(f"expected {form}, not a port range")
    if bracketed is not None:
        try:
            ipaddress.IPv6Address(bracketed)
        except ValueError:
            raise _Malformed(f"[{bracketed}] is not an IPv6 address") from None
    return bracketed or plain, int(first), int(last or first)


def _parse_text(text: str, name: str) -> str:
    return text.strip()


def _parse_secret(text: str, name: str) -> bytes:
    return _secret_bytes(text, name)  # not stripped: the secret is exactly what was set


def _secret_bytes(text: str, name: str) -> bytes:
    try:
        # surrogateescape gives back the bytes of an environment value that is not UTF-8.
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not encodable as UTF-8") from None


def _parse_listen(text: str, name: str) -> tuple[str, tuple[int, int]]:
    try:
        host, first, last = _split_address(text.strip(), _LISTEN_FORM)
    except _Malformed as exc:
        raise ConfigError(f"{name}={text!r}: {exc}") from None
    return host, (first, last)


def _parse_members(text: str, name: str) -> tuple[Seed, ...]:
    seeds = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            raise ConfigError(f"{name}={text!r} has an empty entry: separate {_LISTEN_FORM} entries with one comma")
        try:
            host, first, last = _split_address(entry, _LISTEN_FORM)
        except _Malformed as exc:
            raise ConfigError(f"{name}={text!r}: entry {entry!r}: {exc}") from None
        problem = _host_problem(host) or _ports_problem(first, last, lowest=1)
        if problem:
            raise ConfigError(f"{name}={text!r}: entry {entry!r}: {problem}")
        seeds.append(Seed(host, first, last))
    return tuple(seeds)


def _parse_multicast(text: str, name: str) -> tuple[str, int]:
    try:
        group, port, _ = _split_address(text.strip(), _MULTICAST_FORM)
    except _Malformed as exc:
        raise ConfigError(f"{name}={text!r}: {exc}") from None
    return group, port


def _parse_choice(text: str, name: str) -> str:
    return text.strip().lower()


def _parse_flag(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={text!r} must be true or false")


def _parse_seconds(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number of seconds") from None


def _parse_count(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None


def _parse_bytes(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number of bytes") from None


def _setting(variable: str, parse: Callable[[str, str], Any], *fields: str) -> _Setting:
    return _Setting(variable, parse, fields)


#: Keyword of :meth:`ClusterConfig.from_env` -> its variable, parser and field(s).
_SETTINGS: dict[str, _Setting] = {
    "route": _setting("REPLISESSION_ROUTE", _parse_text, "route"),
    "listen": _setting("REPLISESSION_LISTEN", _parse_listen, "listen_host", "listen_ports"),
    "members": _setting("REPLISESSION_MEMBERS", _parse_members, "members"),
    "multicast": _setting("REPLISESSION_MULTICAST", _parse_multicast, "multicast"),
    "secret": _setting("REPLISESSION_CLUSTER_SECRET", _parse_secret, "secret"),
    "cluster_name": _setting("REPLISESSION_CLUSTER_NAME", _parse_text, "cluster_name"),
    "heartbeat_interval": _setting("REPLISESSION_HEARTBEAT_INTERVAL", _parse_seconds, "heartbeat_interval"),
    "drop_time": _setting("REPLISESSION_DROP_TIME", _parse_seconds, "drop_time"),
    "probe_timeout": _setting("REPLISESSION_PROBE_TIMEOUT", _parse_seconds, "probe_timeout"),
    "send_timeout": _setting("REPLISESSION_SEND_TIMEOUT", _parse_seconds, "send_timeout"),
    "max_frame_size": _setting("REPLISESSION_MAX_FRAME_SIZE", _parse_bytes, "max_frame_size"),
    "compress_threshold": _setting("REPLISESSION_COMPRESS_THRESHOLD", _parse_bytes, "compress_threshold"),
    "send_queue_bytes": _setting("REPLISESSION_SEND_QUEUE_BYTES", _parse_bytes, "send_queue_bytes"),
    "async_linger": _setting("REPLISESSION_ASYNC_LINGER", _parse_seconds, "async_linger"),
    "tls_cert": _setting("REPLISESSION_TLS_CERT", _parse_text, "tls_cert"),
    "tls_key": _setting("REPLISESSION_TLS_KEY", _parse_text, "tls_key"),
    "tls_ca": _setting("REPLISESSION_TLS_CA", _parse_text, "tls_ca"),
    "send_mode": _setting("REPLISESSION_SEND_MODE", _parse_choice, "send_mode"),
    "send_failure": _setting("REPLISESSION_SEND_FAILURE", _parse_choice, "send_failure"),
    "notify_listeners_on_replication": _setting(
        "REPLISESSION_NOTIFY_LISTENERS_ON_REPLICATION", _parse_flag, "notify_listeners_on_replication"
    ),
    "manager": _setting("REPLISESSION_MANAGER", _parse_choice, "manager"),
    "backups": _setting("REPLISESSION_BACKUPS", _parse_count, "backups"),
}


# -- validation, shared by the constructor and from_env --------------------------------------


class _Names:
    """How an error names a field: its keyword, or the variable (and text) it came from."""

    __slots__ = ("_labels", "_texts")

    def __init__(self, labels: Mapping[str, str] | None = None, texts: Mapping[str, str] | None = None) -> None:
        self._labels = labels or {}
        self._texts = texts or {}

    def __call__(self, field: str) -> str:
        return self._labels.get(field, field)

    def show(self, field: str, value: object) -> str:
        return f"{self(field)}={self._texts.get(field, value)!r}"


def _validated(values: dict[str, Any], name: _Names) -> dict[str, Any]:
    """Check every field and the rules between them; return the normalised values."""
    out = dict(values)
    out["route"] = _check_route(values["route"], name)

    host, ports = values["listen_host"], values["listen_ports"]
    if isinstance(ports, list):
        ports = tuple(ports)
    if not isinstance(host, str):
        raise ConfigError(f"{name.show('listen_host', host)} must be a host name or IP address string")
    if not (isinstance(ports, tuple) and len(ports) == 2 and all(_is_int(p) for p in ports)):
        raise ConfigError(f"{name.show('listen_ports', ports)} must be a (first, last) pair of port numbers")
    problem = _host_problem(host) or _ports_problem(*ports, lowest=0)
    if problem:
        raise ConfigError(f"{name.show('listen_host', host)}: {problem}")
    out["listen_ports"] = ports

    members = values["members"]
    if isinstance(members, list):
        members = tuple(members)
    if not isinstance(members, tuple) or not all(isinstance(seed, Seed) for seed in members):
        raise ConfigError(f"{name.show('members', members)} must be a tuple of Seed")
    out["members"] = members

    out["multicast"] = _check_multicast(values["multicast"], name)
    if members and out["multicast"] is not None:
        raise ConfigError(
            f"{name('members')} and {name('multicast')} are both set: multicast discovery replaces "
            "the seed list, so set one of them"
        )

    secret = values["secret"]
    if isinstance(secret, str):
        secret = _secret_bytes(secret, name("secret"))
    elif isinstance(secret, bytearray):
        secret = bytes(secret)
    if secret is not None and not isinstance(secret, bytes):
        # Never the value itself: a secret must not reach a log.
        raise ConfigError(f"{name('secret')} must be a string or bytes, not {type(secret).__name__}")
    out["secret"] = secret or None

    cluster_name = values["cluster_name"]
    if (
        not isinstance(cluster_name, str)
        or not 1 <= len(cluster_name) <= MAX_CLUSTER_NAME
        or not cluster_name.isprintable()
        or cluster_name != cluster_name.strip()
    ):
        raise ConfigError(
            f"{name.show('cluster_name', cluster_name)} must be 1-{MAX_CLUSTER_NAME} printable characters, "
            "without spaces at either end"
        )

    for field in ("heartbeat_interval", "drop_time", "probe_timeout", "send_timeout"):
        value = values[field]
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name.show(field, value)} must be a positive number of seconds")
        out[field] = float(value)
    if out["drop_time"] <= out["heartbeat_interval"]:
        raise ConfigError(
            f"{name.show('drop_time', values['drop_time'])} must be longer than "
            f"{name.show('heartbeat_interval', values['heartbeat_interval'])}: a member would be dropped "
            "between two heartbeats"
        )

    linger = values["async_linger"]
    if not _is_number(linger) or not 0 <= linger <= 1:
        raise ConfigError(f"{name.show('async_linger', linger)} must be a number of seconds from 0 to 1")
    out["async_linger"] = float(linger)

    _check_size(values, "max_frame_size", name, MIN_FRAME_SIZE, MAX_FRAME_SIZE)
    _check_size(values, "send_queue_bytes", name, 1, None)
    if values["compress_threshold"] is not None:
        _check_size(values, "compress_threshold", name, 0, None)

    out.update(_check_tls(values, name))

    for field, choices in (("send_mode", SEND_MODES), ("send_failure", SEND_FAILURES), ("manager", MANAGERS)):
        value = values[field]
        if value not in choices:
            raise ConfigError(f"{name.show(field, value)} must be one of {', '.join(choices)}")
    backups = values["backups"]
    if not isinstance(backups, int) or isinstance(backups, bool) or not 1 <= backups <= 16:
        raise ConfigError(f"{name.show('backups', backups)} must be a whole number from 1 to 16")
    if not isinstance(values["notify_listeners_on_replication"], bool):
        raise ConfigError(
            f"{name.show('notify_listeners_on_replication', values['notify_listeners_on_replication'])}"
            " must be true or false"
        )

    if out["members"] or out["multicast"] is not None:
        if out["secret"] is None and not _is_loopback(host):
            # Any process that can reach the port could join and read every session.
            raise ConfigError(
                f"{name.show('listen_host', host)} is not a loopback address: set {name('secret')} "
                "so that peers must authenticate"
            )
    return out


def _check_route(route: Any, name: _Names) -> str | None:
    if route is None:
        return None
    if not isinstance(route, str):
        raise ConfigError(f"{name.show('route', route)} must be a string or None")
    label = name("route")
    # config._route names the keyword when given one, the variable when it reads it.
    return _route(route, {}) if label == "route" else _route(None, {label: route})


def _check_multicast(multicast: Any, name: _Names) -> tuple[str, int] | None:
    if multicast is None:
        return None
    shown = name.show("multicast", multicast)
    if isinstance(multicast, list):
        multicast = tuple(multicast)
    if not (isinstance(multicast, tuple) and len(multicast) == 2 and isinstance(multicast[0], str)):
        raise ConfigError(f"{shown} must be a (group, port) pair or None")
    group, port = multicast
    try:
        address = ipaddress.ip_address(group)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv4Address) or address not in _IPV4_MULTICAST:
        raise ConfigError(f"{shown}: {group!r} is not an IPv4 multicast group (224.0.0.0/4)")
    if not _is_int(port) or not 1 <= port <= 65535:
        raise ConfigError(f"{shown}: port {port!r} is outside 1-65535")
    return str(address), port


def _check_size(values: Mapping[str, Any], field: str, name: _Names, low: int, high: int | None) -> None:
    value = values[field]
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name.show(field, value)} must be a whole number of bytes {bound}")


def _check_tls(values: Mapping[str, Any], name: _Names) -> dict[str, str | None]:
    paths: dict[str, str | None] = {}
    for field in ("tls_cert", "tls_key", "tls_ca"):
        path = values[field]
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if path is not None and not isinstance(path, str):
            raise ConfigError(f"{name.show(field, path)} must be a file path or None")
        paths[field] = path or None
    given = [field for field, path in paths.items() if path is not None]
    if given and len(given) < len(paths):
        missing = [field for field in paths if field not in given]
        raise ConfigError(
            f"{' and '.join(name(f) for f in given)} set without {' and '.join(name(f) for f in missing)}: "
            "mutual TLS needs our certificate, its key and the CA that signed the peers' certificates"
        )
    for field in given:
        if not os.path.isfile(str(paths[field])):
            raise ConfigError(f"{name.show(field, paths[field])} is not a file")
    return paths


# -- small predicates -------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    """An int that is not a bool (ports, byte counts)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _host_problem(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    # An all-digit last label would be read as a (short-form) IPv4 address by the resolver.
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return f"{host!r} is not an IP address or host name"
    return None


def _ports_problem(first: int, last: int, *, lowest: int) -> str | None:
    for port in (first, last):
        if not lowest <= port <= 65535:
            return f"port {port} is outside {lowest}-65535"
    if first > last:
        return f"port range {first}-{last} runs backwards"
    if first == 0 and last != 0:
        return "port 0 (any free port) cannot start a range"
    if last - first + 1 > MAX_PORT_RANGE:
        return f"port range {first}-{last} spans {last - first + 1} ports, more than {MAX_PORT_RANGE}"
    return None


def _is_loopback(host: str) -> bool:
    """Loopback as far as can be told without resolving: 0.0.0.0 and :: are every interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normal_host(host: str) -> str:
    host = host.lower()
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.removesuffix(".")


def _format_address(host: str, first: int, last: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{first}" if first == last else f"{host}:{first}-{last}"
