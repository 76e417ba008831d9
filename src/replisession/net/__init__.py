"""The network: the only package with sockets.

- :mod:`.tcp`: the peer channel, one authenticated TCP connection per pair of members;
- :mod:`.peer`: one such connection, an asyncio protocol around the wire's state machine;
- :mod:`.multicast`: discovery by authenticated multicast beacons;
- :mod:`.probe`: the failure detector's bare TCP connect;
- :mod:`.tls`: mutual TLS contexts for the peer channel;
- :mod:`.flow`: write-side flow control.

The protocol itself (framing, handshake, authentication) is sans-IO, in ``wire/``;
these modules only move its bytes and run its timers.
"""

from .multicast import MulticastDiscovery
from .probe import probe
from .tcp import TcpTransport, TransportListener

__all__ = ["MulticastDiscovery", "TcpTransport", "TransportListener", "probe"]
