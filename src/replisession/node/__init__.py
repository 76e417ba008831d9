"""The node layer: wires the sans-IO core to clocks, threads, timers and the network."""

from .listener import ClusterListener
from .member import ClusterMember
from .sessions import Node

__all__ = ["ClusterListener", "ClusterMember", "Node"]
