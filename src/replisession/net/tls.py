"""Mutual TLS for the peer channel (Tomcat advertises a ``securePort`` but has no TLS code).

Both ends present a certificate and both require one signed by ``tls_ca``: a
certificate proves membership of the CA, and the authenticated handshake inside the
TLS channel (the cluster secret) says which member is at the other end. Host names are
therefore not checked; members dial each other by address, often by IP.
"""

from __future__ import annotations

import ssl

from ..cluster_config import ClusterConfig
from ..errors import ConfigError

__all__ = ["client_context", "server_context"]


def server_context(config: ClusterConfig) -> ssl.SSLContext:
    """The context of our listening socket: our certificate, and the peers' required."""
    return _context(config, ssl.PROTOCOL_TLS_SERVER)


def client_context(config: ClusterConfig) -> ssl.SSLContext:
    """The context of the connections we dial: our certificate, and the peer's required."""
    return _context(config, ssl.PROTOCOL_TLS_CLIENT)


def _context(config: ClusterConfig, protocol: int) -> ssl.SSLContext:
    if config.tls_cert is None or config.tls_key is None or config.tls_ca is None:
        raise ConfigError("mutual TLS needs tls_cert, tls_key and tls_ca")
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # before verify_mode: a client context refuses the reverse order
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load tls_cert={config.tls_cert!r} with tls_key={config.tls_key!r}: {exc}") from exc
    try:
        context.load_verify_locations(cafile=config.tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load tls_ca={config.tls_ca!r}: {exc}") from exc
    return context
