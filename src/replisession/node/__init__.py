"""The node layer: wires the sans-IO core to clocks, threads, timers and the network."""

from .member import ClusterListener, ClusterMember
from .sessions import Node

__all__ = ["ClusterListener", "ClusterMember", "Node"]
