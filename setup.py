"""Builds replisession: pure Python, plus the peer channel's per-message modules compiled
to C by mypyc (from mypy, which type-checks this code already) wherever CPython and a C
compiler are at hand, which is what ``pip install`` does by default.

Compiled, they cost about 13 % less CPU per replicated write (benchmarks/README.md). The
pure-Python modules stay in the package: without a C compiler the build skips the
extensions and they serve instead.

``REPLISESSION_COMPILE=0`` builds pure Python only: ``./scripts/test`` installs the
working tree that way, so that an edited module is never shadowed by a stale compiled one,
and compiles in place (``./scripts/compile``) only for its second, compiled pass.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup

#: What every replicated message passes through, several times per write: the sans-IO
#: frames, MACs and connection state machine, the channel's bookkeeping, membership, the
#: transport and the member that wires them. Not here: what applications subclass or
#: patch (listeners, sessions, managers) and what runs once per request at most.
COMPILED = [
    "src/replisession/wire/frames.py",
    "src/replisession/wire/auth.py",
    "src/replisession/wire/connection.py",
    "src/replisession/core/channel.py",
    "src/replisession/core/membership.py",
    "src/replisession/net/peer.py",
    "src/replisession/net/tcp.py",
    "src/replisession/node/member.py",
]


def compiled_modules() -> list[Any]:
    if os.environ.get("REPLISESSION_COMPILE", "1") == "0" or sys.implementation.name != "cpython":
        return []
    from mypyc.build import mypycify

    extensions = mypycify(COMPILED, opt_level="3", group_name="replisession")
    for extension in extensions:
        extension.optional = True  # no C compiler: the build goes on, pure Python
    return extensions


setup(ext_modules=compiled_modules())
