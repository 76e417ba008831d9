"""Cluster settings: every variable read, every bad value refused with its name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from replisession.cluster_config import ClusterConfig, Seed
from replisession.errors import ConfigError

MiB = 1024 * 1024
SECRET = "s3cret-that-must-not-leak"


def from_env(**env: str) -> ClusterConfig:
    return ClusterConfig.from_env(env)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name in ("cert", "key", "ca"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        paths[name] = str(path)
    return paths


# -- defaults and happy paths ----------------------------------------------------------------


def test_defaults_are_a_single_member_on_tomcats_ports() -> None:
    assert from_env() == ClusterConfig(
        route=None,
        listen_host="127.0.0.1",
        listen_ports=(4000, 4100),
        members=(),
        multicast=None,
        secret=None,
        cluster_name="replisession",
        heartbeat_interval=0.5,
        drop_time=3.0,
        probe_timeout=1.0,
        send_timeout=3.0,
        max_frame_size=16 * MiB,
        compress_threshold=None,
        send_queue_bytes=8 * MiB,
        async_linger=0.0,
        tls_cert=None,
        tls_key=None,
        tls_ca=None,
    )
    assert ClusterConfig() == from_env()
    assert not ClusterConfig().enabled
    assert not ClusterConfig().tls


def test_every_variable_is_read(tls_files: dict[str, str]) -> None:
    config = from_env(
        REPLISESSION_ROUTE="node-1",
        REPLISESSION_LISTEN="10.0.0.5:5000-5009",
        REPLISESSION_MEMBERS="10.0.0.5:5000-5009,10.0.0.6:5000",
        REPLISESSION_CLUSTER_SECRET=SECRET,
        REPLISESSION_CLUSTER_NAME="shop prod",
        REPLISESSION_HEARTBEAT_INTERVAL="0.25",
        REPLISESSION_DROP_TIME="2",
        REPLISESSION_PROBE_TIMEOUT="0.5",
        REPLISESSION_SEND_TIMEOUT="10",
        REPLISESSION_MAX_FRAME_SIZE="65536",
        REPLISESSION_COMPRESS_THRESHOLD="4096",
        REPLISESSION_SEND_QUEUE_BYTES="1048576",
        REPLISESSION_ASYNC_LINGER="0.005",
        REPLISESSION_TLS_CERT=tls_files["cert"],
        REPLISESSION_TLS_KEY=tls_files["key"],
        REPLISESSION_TLS_CA=tls_files["ca"],
    )
    assert config == ClusterConfig(
        route="node-1",
        listen_host="10.0.0.5",
        listen_ports=(5000, 5009),
        members=(Seed("10.0.0.5", 5000, 5009), Seed("10.0.0.6", 5000, 5000)),
        multicast=None,
        secret=SECRET.encode(),
        cluster_name="shop prod",
        heartbeat_interval=0.25,
        drop_time=2.0,
        probe_timeout=0.5,
        send_timeout=10.0,
        max_frame_size=65536,
        compress_threshold=4096,
        send_queue_bytes=1048576,
        async_linger=0.005,
        tls_cert=tls_files["cert"],
        tls_key=tls_files["key"],
        tls_ca=tls_files["ca"],
    )
    assert config.enabled
    assert config.tls


@pytest.mark.parametrize(
    ("text", "host", "ports"),
    [
        ("127.0.0.1:4000", "127.0.0.1", (4000, 4000)),
        ("127.0.0.1:4000-4100", "127.0.0.1", (4000, 4100)),
        ("localhost:4000-4003", "localhost", (4000, 4003)),
        ("node-1.internal:4000", "node-1.internal", (4000, 4000)),
        ("app_web_1:4000", "app_web_1", (4000, 4000)),
        ("[::1]:4000", "::1", (4000, 4000)),
        ("[::1]:4000-4010", "::1", (4000, 4010)),
        ("[fe80::1%eth0]:4000", "fe80::1%eth0", (4000, 4000)),
        ("  127.0.0.1:4001  ", "127.0.0.1", (4001, 4001)),
        ("127.0.0.1:0", "127.0.0.1", (0, 0)),
        ("127.0.0.1:5000-6023", "127.0.0.1", (5000, 6023)),
    ],
)
def test_listen_forms(text: str, host: str, ports: tuple[int, int]) -> None:
    config = from_env(REPLISESSION_LISTEN=text)
    assert (config.listen_host, config.listen_ports) == (host, ports)


def test_members_with_ranges_spaces_ipv6_and_names() -> None:
    config = from_env(REPLISESSION_MEMBERS=" 127.0.0.1:4000-4002 ,localhost:4005,  [::1]:4000 , web_2:80")
    assert config.members == (
        Seed("127.0.0.1", 4000, 4002),
        Seed("localhost", 4005, 4005),
        Seed("::1", 4000, 4000),
        Seed("web_2", 80, 80),
    )
    assert config.enabled


def test_multicast_is_read_and_enables_the_cluster() -> None:
    config = from_env(REPLISESSION_MULTICAST="228.0.0.4:45564")
    assert config.multicast == ("228.0.0.4", 45564)
    assert config.members == ()
    assert config.enabled


def test_a_route_alone_does_not_make_a_cluster() -> None:
    config = from_env(REPLISESSION_ROUTE="node1")
    assert config.route == "node1"
    assert not config.enabled


@pytest.mark.parametrize(
    "variable",
    [
        "REPLISESSION_ROUTE",
        "REPLISESSION_LISTEN",
        "REPLISESSION_MEMBERS",
        "REPLISESSION_MULTICAST",
        "REPLISESSION_CLUSTER_SECRET",
        "REPLISESSION_CLUSTER_NAME",
        "REPLISESSION_HEARTBEAT_INTERVAL",
        "REPLISESSION_DROP_TIME",
        "REPLISESSION_PROBE_TIMEOUT",
        "REPLISESSION_SEND_TIMEOUT",
        "REPLISESSION_MAX_FRAME_SIZE",
        "REPLISESSION_COMPRESS_THRESHOLD",
        "REPLISESSION_SEND_QUEUE_BYTES",
        "REPLISESSION_ASYNC_LINGER",
        "REPLISESSION_TLS_CERT",
        "REPLISESSION_TLS_KEY",
        "REPLISESSION_TLS_CA",
    ],
)
@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_variable_means_the_default(variable: str, blank: str) -> None:
    assert ClusterConfig.from_env({variable: blank}) == ClusterConfig()


def test_values_other_than_the_secret_are_stripped() -> None:
    config = from_env(REPLISESSION_CLUSTER_NAME=" prod ", REPLISESSION_ROUTE=" n1 ", REPLISESSION_DROP_TIME=" 4 ")
    assert (config.cluster_name, config.route, config.drop_time) == ("prod", "n1", 4.0)


def test_numbers_accept_integers_and_python_literals() -> None:
    config = from_env(REPLISESSION_SEND_TIMEOUT="5", REPLISESSION_MAX_FRAME_SIZE="16_777_216")
    assert (config.send_timeout, config.max_frame_size) == (5.0, 16 * MiB)
    assert isinstance(config.send_timeout, float)


def test_compression_threshold_zero_compresses_everything() -> None:
    assert from_env(REPLISESSION_COMPRESS_THRESHOLD="0").compress_threshold == 0


def test_the_secret_is_kept_exactly_and_undecodable_bytes_survive() -> None:
    assert from_env(REPLISESSION_CLUSTER_SECRET=" spaced ").secret == b" spaced "
    # os.environ hands a non-UTF-8 value over with surrogateescape.
    assert from_env(REPLISESSION_CLUSTER_SECRET="k\udcff").secret == b"k\xff"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLISESSION_ROUTE", "from-os")
    monkeypatch.setenv("REPLISESSION_LISTEN", "127.0.0.1:4500")
    config = ClusterConfig.from_env()
    assert (config.route, config.listen_ports) == ("from-os", (4500, 4500))


# -- overrides ---------------------------------------------------------------------------------


def test_overrides_win_over_the_environment() -> None:
    env = {
        "REPLISESSION_ROUTE": "env",
        "REPLISESSION_LISTEN": "127.0.0.1:4000",
        "REPLISESSION_MEMBERS": "127.0.0.1:4000-4001",
        "REPLISESSION_CLUSTER_SECRET": "env-secret",
        "REPLISESSION_DROP_TIME": "9",
        "REPLISESSION_COMPRESS_THRESHOLD": "100",
    }
    config = ClusterConfig.from_env(
        env,
        route="arg",
        listen="[::1]:4100-4101",
        members=(Seed("::1", 4100, 4101),),
        secret=b"arg-secret",
        drop_time=4,
        compress_threshold=None,
    )
    assert (config.route, config.listen_host, config.listen_ports) == ("arg", "::1", (4100, 4101))
    assert config.members == (Seed("::1", 4100, 4101),)
    assert (config.secret, config.drop_time, config.compress_threshold) == (b"arg-secret", 4.0, None)


def test_string_overrides_are_read_like_the_variable() -> None:
    config = ClusterConfig.from_env(
        {}, members="127.0.0.1:4000-4001, 127.0.0.1:4005", heartbeat_interval="0.1", max_frame_size="70000"
    )
    assert config.members == (Seed("127.0.0.1", 4000, 4001), Seed("127.0.0.1", 4005, 4005))
    assert (config.heartbeat_interval, config.max_frame_size) == (0.1, 70000)


def test_none_and_empty_overrides_switch_a_variable_off() -> None:
    env = {"REPLISESSION_MULTICAST": "228.0.0.4:45564", "REPLISESSION_ROUTE": "env"}
    assert ClusterConfig.from_env(env, multicast=None, route="") == ClusterConfig()


def test_unknown_overrides_are_a_type_error() -> None:
    with pytest.raises(TypeError, match=re.escape("unexpected keyword arguments: listen_host, rout")):
        ClusterConfig.from_env({}, rout="x", listen_host="127.0.0.1")


# -- invalid values name what to fix -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REPLISESSION_ROUTE": "a.b"}, "REPLISESSION_ROUTE 'a.b' is not a valid route"),
        ({"REPLISESSION_ROUTE": "x" * 65}, f"REPLISESSION_ROUTE '{'x' * 65}' is not a valid route"),
        ({"REPLISESSION_LISTEN": "4000"}, "REPLISESSION_LISTEN='4000': expected HOST:PORT or HOST:FIRST-LAST"),
        ({"REPLISESSION_LISTEN": "127.0.0.1"}, "REPLISESSION_LISTEN='127.0.0.1': expected HOST:PORT"),
        ({"REPLISESSION_LISTEN": ":4000"}, "REPLISESSION_LISTEN=':4000': expected HOST:PORT"),
        ({"REPLISESSION_LISTEN": "127.0.0.1:40a"}, "REPLISESSION_LISTEN='127.0.0.1:40a': expected HOST:PORT"),
        ({"REPLISESSION_LISTEN": "127.0.0.1:-1"}, "REPLISESSION_LISTEN='127.0.0.1:-1': expected HOST:PORT"),
        ({"REPLISESSION_LISTEN": "::1:4000"}, "REPLISESSION_LISTEN='::1:4000': an IPv6 address needs brackets"),
        ({"REPLISESSION_LISTEN": "[node]:4000"}, "REPLISESSION_LISTEN='[node]:4000': [node] is not an IPv6 address"),
        ({"REPLISESSION_LISTEN": "bad host:4000"}, "REPLISESSION_LISTEN='bad host:4000': 'bad host' is not an IP"),
        ({"REPLISESSION_LISTEN": "-node:4000"}, "REPLISESSION_LISTEN='-node:4000': '-node' is not an IP address"),
        ({"REPLISESSION_LISTEN": "10.0.1:4000"}, "REPLISESSION_LISTEN='10.0.1:4000': '10.0.1' is not an IP address"),
        ({"REPLISESSION_LISTEN": "h:65536"}, "REPLISESSION_LISTEN='h:65536': port 65536 is outside 0-65535"),
        ({"REPLISESSION_LISTEN": "h:4100-4000"}, "REPLISESSION_LISTEN='h:4100-4000': port range 4100-4000 runs back"),
        ({"REPLISESSION_LISTEN": "h:0-10"}, "REPLISESSION_LISTEN='h:0-10': port 0 (any free port) cannot start a"),
        (
            {"REPLISESSION_LISTEN": "h:4000-5024"},
            "REPLISESSION_LISTEN='h:4000-5024': port range 4000-5024 spans 1025 ports, more than 1024",
        ),
        ({"REPLISESSION_MEMBERS": "a:1,,b:2"}, "REPLISESSION_MEMBERS='a:1,,b:2' has an empty entry"),
        ({"REPLISESSION_MEMBERS": "a:1,"}, "REPLISESSION_MEMBERS='a:1,' has an empty entry"),
        ({"REPLISESSION_MEMBERS": ","}, "REPLISESSION_MEMBERS=',' has an empty entry"),
        ({"REPLISESSION_MEMBERS": "a:1, b"}, "REPLISESSION_MEMBERS='a:1, b': entry 'b': expected HOST:PORT"),
        ({"REPLISESSION_MEMBERS": "a:0"}, "REPLISESSION_MEMBERS='a:0': entry 'a:0': port 0 is outside 1-65535"),
        ({"REPLISESSION_MEMBERS": "a b:1"}, "REPLISESSION_MEMBERS='a b:1': entry 'a b:1': 'a b' is not an IP"),
        (
            {"REPLISESSION_MEMBERS": "a:1-2000"},
            "REPLISESSION_MEMBERS='a:1-2000': entry 'a:1-2000': port range 1-2000 spans 2000 ports, more than 1024",
        ),
        (
            {"REPLISESSION_MEMBERS": "a:9-8"},
            "REPLISESSION_MEMBERS='a:9-8': entry 'a:9-8': port range 9-8 runs backwards",
        ),
        ({"REPLISESSION_MULTICAST": "228.0.0.4"}, "REPLISESSION_MULTICAST='228.0.0.4': expected GROUP:PORT"),
        (
            {"REPLISESSION_MULTICAST": "228.0.0.4:1-2"},
            "REPLISESSION_MULTICAST='228.0.0.4:1-2': expected GROUP:PORT, not a port range",
        ),
        (
            {"REPLISESSION_MULTICAST": "10.0.0.4:45564"},
            "REPLISESSION_MULTICAST='10.0.0.4:45564': '10.0.0.4' is not an IPv4 multicast group (224.0.0.0/4)",
        ),
        (
            {"REPLISESSION_MULTICAST": "240.0.0.1:45564"},
            "REPLISESSION_MULTICAST='240.0.0.1:45564': '240.0.0.1' is not an IPv4 multicast group",
        ),
        (
            {"REPLISESSION_MULTICAST": "[ff02::1]:45564"},
            "REPLISESSION_MULTICAST='[ff02::1]:45564': 'ff02::1' is not an IPv4 multicast group",
        ),
        (
            {"REPLISESSION_MULTICAST": "group:45564"},
            "REPLISESSION_MULTICAST='group:45564': 'group' is not an IPv4 multicast group",
        ),
        (
            {"REPLISESSION_MULTICAST": "228.0.0.4:0"},
            "REPLISESSION_MULTICAST='228.0.0.4:0': port 0 is outside 1-65535",
        ),
        (
            {"REPLISESSION_MEMBERS": "a:1", "REPLISESSION_MULTICAST": "228.0.0.4:45564"},
            "REPLISESSION_MEMBERS and REPLISESSION_MULTICAST are both set",
        ),
        ({"REPLISESSION_CLUSTER_SECRET": "k\ud800"}, "REPLISESSION_CLUSTER_SECRET is not encodable as UTF-8"),
        ({"REPLISESSION_CLUSTER_NAME": "x" * 129}, "REPLISESSION_CLUSTER_NAME='" + "x" * 129 + "' must be 1-128"),
        ({"REPLISESSION_CLUSTER_NAME": "a\tb"}, "REPLISESSION_CLUSTER_NAME='a\\tb' must be 1-128 printable"),
        ({"REPLISESSION_HEARTBEAT_INTERVAL": "fast"}, "REPLISESSION_HEARTBEAT_INTERVAL='fast' is not a number"),
        ({"REPLISESSION_HEARTBEAT_INTERVAL": "0"}, "REPLISESSION_HEARTBEAT_INTERVAL='0' must be a positive number"),
        ({"REPLISESSION_HEARTBEAT_INTERVAL": "nan"}, "REPLISESSION_HEARTBEAT_INTERVAL='nan' must be a positive"),
        ({"REPLISESSION_DROP_TIME": "-1"}, "REPLISESSION_DROP_TIME='-1' must be a positive number of seconds"),
        ({"REPLISESSION_DROP_TIME": "inf"}, "REPLISESSION_DROP_TIME='inf' must be a positive number of seconds"),
        (
            {"REPLISESSION_DROP_TIME": "0.5"},
            "REPLISESSION_DROP_TIME='0.5' must be longer than REPLISESSION_HEARTBEAT_INTERVAL=0.5",
        ),
        (
            {"REPLISESSION_HEARTBEAT_INTERVAL": "5"},
            "REPLISESSION_DROP_TIME=3.0 must be longer than REPLISESSION_HEARTBEAT_INTERVAL='5'",
        ),
        ({"REPLISESSION_PROBE_TIMEOUT": "1s"}, "REPLISESSION_PROBE_TIMEOUT='1s' is not a number of seconds"),
        ({"REPLISESSION_PROBE_TIMEOUT": "0"}, "REPLISESSION_PROBE_TIMEOUT='0' must be a positive number"),
        ({"REPLISESSION_SEND_TIMEOUT": "3000ms"}, "REPLISESSION_SEND_TIMEOUT='3000ms' is not a number of seconds"),
        ({"REPLISESSION_SEND_TIMEOUT": "-3"}, "REPLISESSION_SEND_TIMEOUT='-3' must be a positive number"),
        ({"REPLISESSION_MAX_FRAME_SIZE": "16MiB"}, "REPLISESSION_MAX_FRAME_SIZE='16MiB' is not a whole number"),
        ({"REPLISESSION_MAX_FRAME_SIZE": "1.5"}, "REPLISESSION_MAX_FRAME_SIZE='1.5' is not a whole number of bytes"),
        (
            {"REPLISESSION_MAX_FRAME_SIZE": "65535"},
            "REPLISESSION_MAX_FRAME_SIZE='65535' must be a whole number of bytes between 65536 and 1073741824",
        ),
        (
            {"REPLISESSION_MAX_FRAME_SIZE": str(2**30 + 1)},
            f"REPLISESSION_MAX_FRAME_SIZE='{2**30 + 1}' must be a whole number of bytes between 65536",
        ),
        ({"REPLISESSION_COMPRESS_THRESHOLD": "big"}, "REPLISESSION_COMPRESS_THRESHOLD='big' is not a whole number"),
        ({"REPLISESSION_COMPRESS_THRESHOLD": "-1"}, "REPLISESSION_COMPRESS_THRESHOLD='-1' must be a whole number of"),
        ({"REPLISESSION_ASYNC_LINGER": "soon"}, "REPLISESSION_ASYNC_LINGER='soon' is not a number of seconds"),
        ({"REPLISESSION_ASYNC_LINGER": "5"}, "REPLISESSION_ASYNC_LINGER='5' must be a number of seconds from 0 to 1"),
        ({"REPLISESSION_SEND_QUEUE_BYTES": "lots"}, "REPLISESSION_SEND_QUEUE_BYTES='lots' is not a whole number"),
        (
            {"REPLISESSION_SEND_QUEUE_BYTES": "0"},
            "REPLISESSION_SEND_QUEUE_BYTES='0' must be a whole number of bytes at least 1",
        ),
        ({"REPLISESSION_TLS_CERT": "/c"}, "REPLISESSION_TLS_CERT set without REPLISESSION_TLS_KEY and REPLISESSION"),
        ({"REPLISESSION_TLS_KEY": "/k"}, "REPLISESSION_TLS_KEY set without REPLISESSION_TLS_CERT and REPLISESSION"),
        (
            {"REPLISESSION_TLS_CERT": "/c", "REPLISESSION_TLS_KEY": "/k"},
            "REPLISESSION_TLS_CERT and REPLISESSION_TLS_KEY set without REPLISESSION_TLS_CA: mutual TLS needs",
        ),
    ],
)
def test_invalid_variables_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClusterConfig.from_env(env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"route": "a.b"}, "route 'a.b' is not a valid route"),
        ({"route": ""}, "route '' is not a valid route"),
        ({"route": 7}, "route=7 must be a string or None"),
        ({"listen_host": ""}, "listen_host='': '' is not an IP address or host name"),
        ({"listen_host": None}, "listen_host=None must be a host name or IP address string"),
        ({"listen_ports": (4000,)}, "listen_ports=(4000,) must be a (first, last) pair of port numbers"),
        ({"listen_ports": (True, 4000)}, "listen_ports=(True, 4000) must be a (first, last) pair"),
        ({"listen_ports": (1, 70000)}, "listen_host='127.0.0.1': port 70000 is outside 0-65535"),
        ({"members": "a:1"}, "members='a:1' must be a tuple of Seed"),
        ({"members": (("a", 1, 1),)}, "members=(('a', 1, 1),) must be a tuple of Seed"),
        ({"multicast": "228.0.0.4:45564"}, "multicast='228.0.0.4:45564' must be a (group, port) pair or None"),
        ({"multicast": ("228.0.0.4", "1")}, "multicast=('228.0.0.4', '1'): port '1' is outside 1-65535"),
        ({"multicast": ("127.0.0.1", 1)}, "multicast=('127.0.0.1', 1): '127.0.0.1' is not an IPv4 multicast group"),
        (
            {"members": (Seed("a", 1, 1),), "multicast": ("228.0.0.4", 45564)},
            "members and multicast are both set: multicast discovery replaces the seed list",
        ),
        ({"secret": 1234}, "secret must be a string or bytes, not int"),
        ({"cluster_name": ""}, "cluster_name='' must be 1-128 printable characters"),
        ({"cluster_name": None}, "cluster_name=None must be 1-128 printable characters"),
        ({"cluster_name": " prod"}, "cluster_name=' prod' must be 1-128 printable characters, without spaces at"),
        ({"heartbeat_interval": True}, "heartbeat_interval=True must be a positive number of seconds"),
        ({"heartbeat_interval": "0.5"}, "heartbeat_interval='0.5' must be a positive number of seconds"),
        ({"probe_timeout": 0}, "probe_timeout=0 must be a positive number of seconds"),
        ({"send_timeout": float("nan")}, "send_timeout=nan must be a positive number of seconds"),
        ({"drop_time": 0.4}, "drop_time=0.4 must be longer than heartbeat_interval=0.5"),
        ({"max_frame_size": 1024}, "max_frame_size=1024 must be a whole number of bytes between 65536 and"),
        ({"max_frame_size": 65536.0}, "max_frame_size=65536.0 must be a whole number of bytes"),
        ({"compress_threshold": -1}, "compress_threshold=-1 must be a whole number of bytes at least 0"),
        ({"send_queue_bytes": 0}, "send_queue_bytes=0 must be a whole number of bytes at least 1"),
        ({"async_linger": -0.001}, "async_linger=-0.001 must be a number of seconds from 0 to 1"),
        ({"async_linger": 2}, "async_linger=2 must be a number of seconds from 0 to 1"),
        ({"async_linger": float("nan")}, "async_linger=nan must be a number of seconds from 0 to 1"),
        ({"tls_cert": 1}, "tls_cert=1 must be a file path or None"),
        ({"tls_ca": "/ca"}, "tls_ca set without tls_cert and tls_key: mutual TLS needs our certificate"),
    ],
)
def test_invalid_keywords_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClusterConfig(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"route": "a.b"}, "route 'a.b' is not a valid route"),
        ({"listen": "nope"}, "listen='nope': expected HOST:PORT or HOST:FIRST-LAST"),
        ({"listen": ("127.0.0.1", 4000)}, "listen=('127.0.0.1', 4000) must be a HOST:PORT or HOST:FIRST-LAST string"),
        ({"members": "a:1,,b:1"}, "members='a:1,,b:1' has an empty entry"),
        ({"multicast": "1.2.3.4:5"}, "multicast='1.2.3.4:5': '1.2.3.4' is not an IPv4 multicast group"),
        ({"drop_time": "soon"}, "drop_time='soon' is not a number of seconds"),
        ({"drop_time": 0.1}, "drop_time=0.1 must be longer than REPLISESSION_HEARTBEAT_INTERVAL=0.5"),
        ({"max_frame_size": "1"}, "max_frame_size='1' must be a whole number of bytes between 65536"),
        ({"tls_key": "/k"}, "tls_key set without REPLISESSION_TLS_CERT and REPLISESSION_TLS_CA"),
    ],
)
def test_invalid_overrides_are_named_by_keyword(overrides: dict[str, Any], message: str) -> None:
    env = {"REPLISESSION_ROUTE": "ok", "REPLISESSION_DROP_TIME": "3"}
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClusterConfig.from_env(env, **overrides)


# -- a cluster off loopback needs a secret -----------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "10.0.0.5", "[2001:db8::1]", "node1.internal"])
@pytest.mark.parametrize(
    "discovery", [{"REPLISESSION_MEMBERS": "10.0.0.6:4000"}, {"REPLISESSION_MULTICAST": "228.0.0.4:45564"}]
)
def test_a_cluster_off_loopback_is_refused_without_a_secret(host: str, discovery: dict[str, str]) -> None:
    env = {"REPLISESSION_LISTEN": f"{host}:4000", **discovery}
    message = (
        f"REPLISESSION_LISTEN='{host}:4000' is not a loopback address: set REPLISESSION_CLUSTER_SECRET "
        "so that peers must authenticate"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClusterConfig.from_env(env)
    assert ClusterConfig.from_env({**env, "REPLISESSION_CLUSTER_SECRET": SECRET}).secret == SECRET.encode()


def test_the_loopback_rule_names_the_keywords() -> None:
    with pytest.raises(ConfigError, match=re.escape("listen_host='0.0.0.0' is not a loopback address: set secret")):
        ClusterConfig(listen_host="0.0.0.0", members=(Seed("10.0.0.6", 4000, 4000),))
    with pytest.raises(ConfigError, match=re.escape("listen='0.0.0.0:4000' is not a loopback address: set REPLI")):
        ClusterConfig.from_env({"REPLISESSION_MEMBERS": "10.0.0.6:4000"}, listen="0.0.0.0:4000")
    with pytest.raises(ConfigError, match=re.escape("is not a loopback address: set secret so that")):
        ClusterConfig.from_env(
            {
                "REPLISESSION_CLUSTER_SECRET": SECRET,
                "REPLISESSION_MEMBERS": "a:1",
                "REPLISESSION_LISTEN": "0.0.0.0:4000",
            },
            secret=None,
        )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "[::1]"])
def test_a_cluster_on_loopback_needs_no_secret(host: str) -> None:
    config = from_env(REPLISESSION_LISTEN=f"{host}:4000", REPLISESSION_MEMBERS="127.0.0.1:4000-4003")
    assert config.enabled
    assert config.secret is None


def test_a_single_member_may_listen_anywhere_without_a_secret() -> None:
    config = from_env(REPLISESSION_LISTEN="0.0.0.0:4000")
    assert (config.enabled, config.secret) == (False, None)


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_secret_is_no_secret(secret: str | bytes) -> None:
    # The field is typed bytes (what readers get); the constructor also takes str.
    assert ClusterConfig(secret=secret).secret is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape("is not a loopback address")):
        ClusterConfig(secret=secret, listen_host="0.0.0.0", members=(Seed("a", 1, 1),))  # type: ignore[arg-type]


def test_a_string_secret_is_utf8() -> None:
    assert ClusterConfig(secret="clé").secret == "clé".encode()  # type: ignore[arg-type]
    assert ClusterConfig(secret=bytearray(b"k")).secret == b"k"  # type: ignore[arg-type]


# -- the secret never shows --------------------------------------------------------------------


def test_the_secret_is_hidden_in_repr_and_str() -> None:
    config = from_env(REPLISESSION_CLUSTER_SECRET=SECRET, REPLISESSION_MEMBERS="127.0.0.1:4000")
    for text in (repr(config), str(config), f"{config}"):
        assert SECRET not in text
        assert "secret=<hidden>" in text
    assert "secret=None" in repr(ClusterConfig())


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(REPLISESSION_CLUSTER_SECRET=SECRET + "\ud800")
    assert SECRET not in str(info.value)


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_takes_all_three_files(tls_files: dict[str, str]) -> None:
    config = ClusterConfig(tls_cert=tls_files["cert"], tls_key=tls_files["key"], tls_ca=tls_files["ca"])
    assert config.tls
    assert (config.tls_cert, config.tls_key, config.tls_ca) == (tls_files["cert"], tls_files["key"], tls_files["ca"])


def test_tls_accepts_path_objects(tls_files: dict[str, str]) -> None:
    config = ClusterConfig(
        tls_cert=Path(tls_files["cert"]),  # type: ignore[arg-type]
        tls_key=tls_files["key"],
        tls_ca=tls_files["ca"],
    )
    assert config.tls_cert == tls_files["cert"]


@pytest.mark.parametrize(
    ("missing", "variable"),
    [("cert", "REPLISESSION_TLS_CERT"), ("key", "REPLISESSION_TLS_KEY"), ("ca", "REPLISESSION_TLS_CA")],
)
def test_a_missing_tls_file_is_named(tls_files: dict[str, str], missing: str, variable: str) -> None:
    Path(tls_files[missing]).unlink()
    env = {f"REPLISESSION_TLS_{name.upper()}": path for name, path in tls_files.items()}
    with pytest.raises(ConfigError, match=re.escape(f"{variable}={tls_files[missing]!r} is not a file")):
        ClusterConfig.from_env(env)


def test_a_directory_is_not_a_tls_file(tls_files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"tls_ca={str(tmp_path)!r} is not a file")):
        ClusterConfig(tls_cert=tls_files["cert"], tls_key=tls_files["key"], tls_ca=str(tmp_path))


def test_tls_alone_does_not_replace_the_secret(tls_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=re.escape("is not a loopback address")):
        ClusterConfig(
            listen_host="0.0.0.0",
            members=(Seed("10.0.0.6", 4000, 4000),),
            tls_cert=tls_files["cert"],
            tls_key=tls_files["key"],
            tls_ca=tls_files["ca"],
        )


# -- seeds ---------------------------------------------------------------------------------------


def test_a_seed_expands_its_range() -> None:
    assert Seed("h", 4000, 4002).addresses() == [("h", 4000), ("h", 4001), ("h", 4002)]
    assert Seed("h", 4000, 4000).addresses() == [("h", 4000)]
    assert len(Seed("h", 1, 1024).addresses()) == 1024
    assert (str(Seed("h", 4000, 4002)), str(Seed("::1", 4000, 4000))) == ("h:4000-4002", "[::1]:4000")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("h", 0, 0), "seed 'h:0': port 0 is outside 1-65535"),
        (("h", 1, 1025), "seed 'h:1-1025': port range 1-1025 spans 1025 ports, more than 1024"),
        (("h", 5, 4), "seed 'h:5-4': port range 5-4 runs backwards"),
        (("a b", 1, 1), "seed 'a b:1': 'a b' is not an IP address or host name"),
        (("h", "1", 1), "Seed(host='h', first_port='1', last_port=1) needs a host string and integer ports"),
        ((None, 1, 1), "Seed(host=None, first_port=1, last_port=1) needs a host string and integer ports"),
    ],
)
def test_invalid_seeds(args: tuple[Any, Any, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Seed(*args)


def test_seed_addresses_drop_our_own_address_and_duplicates() -> None:
    config = from_env(REPLISESSION_MEMBERS="127.0.0.1:4000-4002, localhost:4001, 10.0.0.6:4000, 127.0.0.1:4002")
    assert config.seed_addresses(("127.0.0.1", 4001)) == [("127.0.0.1", 4000), ("127.0.0.1", 4002), ("10.0.0.6", 4000)]
    assert config.seed_addresses(("localhost", 4000)) == [("127.0.0.1", 4001), ("127.0.0.1", 4002), ("10.0.0.6", 4000)]
    assert config.seed_addresses(("10.0.0.6", 4000)) == [
        ("127.0.0.1", 4000),
        ("127.0.0.1", 4001),
        ("127.0.0.1", 4002),
    ]


def test_seed_addresses_compare_normalised_hosts() -> None:
    config = ClusterConfig(
        members=(Seed("0:0:0:0:0:0:0:1", 4000, 4001), Seed("Node1.Internal", 4000, 4000)),
        secret=SECRET.encode(),
        listen_host="::",
    )
    assert config.seed_addresses(("::1", 4000)) == [("0:0:0:0:0:0:0:1", 4001), ("Node1.Internal", 4000)]
    assert config.seed_addresses(("node1.internal", 4000)) == [("0:0:0:0:0:0:0:1", 4000), ("0:0:0:0:0:0:0:1", 4001)]


def test_bound_to_every_interface_a_loopback_seed_on_our_port_is_us() -> None:
    config = from_env(
        REPLISESSION_LISTEN="0.0.0.0:4000",
        REPLISESSION_MEMBERS="127.0.0.1:4000-4001,localhost:4000,10.0.0.6:4000",
        REPLISESSION_CLUSTER_SECRET=SECRET,
    )
    assert config.seed_addresses(("0.0.0.0", 4000)) == [("127.0.0.1", 4001), ("10.0.0.6", 4000)]


def test_seed_addresses_without_members_is_empty() -> None:
    assert ClusterConfig(multicast=("228.0.0.4", 45564)).seed_addresses(("127.0.0.1", 4000)) == []


def test_the_constructor_normalises_lists() -> None:
    config = ClusterConfig(
        listen_ports=[4000, 4001],  # type: ignore[arg-type]
        members=[Seed("127.0.0.1", 4000, 4001)],  # type: ignore[arg-type]
    )
    assert (config.listen_ports, config.members) == ((4000, 4001), (Seed("127.0.0.1", 4000, 4001),))
    multicast = ClusterConfig(multicast=["228.0.0.4", 45564])  # type: ignore[arg-type]
    assert multicast.multicast == ("228.0.0.4", 45564)
    assert hash(config) == hash(ClusterConfig(listen_ports=(4000, 4001), members=(Seed("127.0.0.1", 4000, 4001),)))


def test_the_config_is_frozen() -> None:
    config = ClusterConfig()
    with pytest.raises(AttributeError):
        config.route = "x"  # type: ignore[misc]
