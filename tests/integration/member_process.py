"""A cluster member in a process of its own, configured only by REPLISESSION_* variables.

It prints one JSON line per membership event on stdout (``{"event": "joined",
"route": ..., "incarnation": ...}``), starting with ``{"event": "started", ...}``,
and leaves gracefully on SIGTERM. Used by the real-process membership tests.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from replisession.cluster_config import ClusterConfig
from replisession.core.messages import MemberInfo
from replisession.node import ClusterListener, ClusterMember

_OUTPUT = threading.Lock()  # the main thread and the member thread both emit: whole lines only


def emit(event: str, member: MemberInfo, **extra: str) -> None:
    line = {"event": event, "route": member.route, "port": member.port, "incarnation": member.incarnation, **extra}
    with _OUTPUT:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


class Printer(ClusterListener):
    def member_joined(self, member: MemberInfo) -> None:
        emit("joined", member)

    def member_suspected(self, member: MemberInfo) -> None:
        emit("suspected", member)

    def member_left(self, member: MemberInfo, reason: str) -> None:
        emit("left", member, reason=reason)


def main() -> None:
    member = ClusterMember(ClusterConfig.from_env(), listeners=[Printer()])
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    emit("started", member.start())
    done.wait()
    member.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
