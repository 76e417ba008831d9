"""Mutual TLS between transports, with a throwaway CA made by the openssl command-line tool."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from replisession.cluster_config import ClusterConfig
from replisession.errors import ConfigError
from replisession.net import tls
from replisession.wire.messages import Leave

from .helpers import accepted, config, connect, members

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command-line tool is not installed"
)

_LEAF = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1
"""


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _member(directory: Path, name: str, ca: str) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", "leaf.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CAs: ``ca`` signed ``one`` and ``two``; ``rogue-ca`` signed ``rogue``."""
    directory = tmp_path_factory.mktemp("pki")
    (directory / "leaf.ext").write_text(_LEAF)
    _ca(directory, "ca")
    _ca(directory, "rogue-ca")
    for name in ("one", "two"):
        _member(directory, name, "ca")
    _member(directory, "rogue", "rogue-ca")
    return directory


def tls_config(pki: Path, name: str, ca: str = "ca") -> ClusterConfig:
    return config(tls_cert=str(pki / f"{name}.pem"), tls_key=str(pki / f"{name}.key"), tls_ca=str(pki / f"{ca}.pem"))


def test_contexts_require_a_peer_certificate_and_tls_1_2(pki: Path) -> None:
    for context in (tls.server_context(tls_config(pki, "one")), tls.client_context(tls_config(pki, "one"))):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.check_hostname is False


def test_a_key_that_does_not_match_the_certificate_is_a_config_error(pki: Path) -> None:
    mismatched = config(tls_cert=str(pki / "one.pem"), tls_key=str(pki / "two.key"), tls_ca=str(pki / "ca.pem"))
    with pytest.raises(ConfigError, match="cannot load tls_cert="):
        tls.server_context(mismatched)


@pytest.mark.asyncio
async def test_two_members_of_one_ca_talk_over_tls(pki: Path) -> None:
    async with members(tls_config(pki, "one"), tls_config(pki, "two")) as (a, b):
        await connect(a, b)
        assert a.transport.send(b.info.id, Leave())
        await b.recorder.wait_for(lambda: len(b.recorder.events) == 3)
        assert b.recorder.events == [*accepted(a.info), ("message", a.info, Leave())]
        [connection] = a.transport._connections
        assert connection.transport is not None
        assert connection.transport.get_extra_info("ssl_object") is not None


TLS_HINT = "check REPLISESSION_TLS_CERT / REPLISESSION_TLS_KEY / REPLISESSION_TLS_CA"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "replisession.net" and r.levelno == logging.WARNING]


@pytest.mark.asyncio
async def test_a_certificate_of_another_ca_is_refused_both_ways(pki: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The rogue trusts our CA, but its own certificate comes from another.
    async with members(tls_config(pki, "one"), tls_config(pki, "rogue")) as (a, rogue):
        a.transport.dial(rogue.info.address)
        await a.recorder.wait_for(lambda: bool(a.recorder.events))
        [(address, refused, reason)] = a.recorder.of("dial_failed")
        assert (address, refused) == (rogue.info.address, True)
        assert reason.startswith("TLS: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

        rogue.transport.dial(a.info.address)
        await rogue.recorder.wait_for(lambda: bool(rogue.recorder.events))
        [(address, refused, reason)] = rogue.recorder.of("dial_failed")
        assert (address, refused) == (a.info.address, True)
        assert reason.startswith("TLS: ")  # an alert, or (TLS 1.3) the server closing after our handshake

        assert len(a.recorder.events) == 1  # and never a connection
        assert len(rogue.recorder.events) == 1
        assert _warnings(caplog) == [
            f"TLS with 127.0.0.1:{rogue.info.port} failed: {a.recorder.events[0][3]} — {TLS_HINT}",
            f"TLS with 127.0.0.1:{a.info.port} failed: {reason} — {TLS_HINT}",
        ]


@pytest.mark.asyncio
async def test_a_plain_member_cannot_talk_to_a_tls_member(pki: Path) -> None:
    async with members(tls_config(pki, "one"), config()) as (a, plain):
        plain.transport.dial(a.info.address)
        await plain.recorder.wait_for(lambda: bool(plain.recorder.events))
        # The TLS server drops the plaintext HELLO without a word: to the plain member, as a peer that went away.
        assert plain.recorder.events == [("dial_failed", a.info.address, False, "closed during the handshake")]
        a.transport.dial(plain.info.address)
        await a.recorder.wait_for(lambda: bool(a.recorder.events))
        [(address, refused, reason)] = a.recorder.of("dial_failed")
        assert (address, refused) == (plain.info.address, True)
        assert reason.startswith("TLS: ")
