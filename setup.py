"""Builds replisession: pure Python, plus the peer channel's per-message modules compiled
to C by mypyc (from mypy, which type-checks this code already) when a wheel is built on
CPython with a C compiler at hand, which is what ``pip install`` does.

Compiled, they take about 11-13 % fewer instructions per replicated write
(benchmarks/README.md). The pure-Python modules stay in the package, and the compiled ones
are all or nothing: if mypyc or the C compiler fails, the build warns and the package is
pure Python. An editable install (``pip install -e``) is never compiled, so that an edited
module is never shadowed by a stale compiled one; ``./scripts/compile`` compiles the
working tree in place on purpose. ``REPLISESSION_COMPILE=0`` builds pure Python only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: What every replicated message passes through, several times per write: the sans-IO
#: frames, MACs and connection state machine, the channel's bookkeeping, membership, the
#: transport and the member that wires them, the send futures and the request's wait for
#: them (loop), and the per-message counters (metrics). Not here: what applications subclass or
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
    "src/replisession/node/loop.py",
    "src/replisession/node/metrics.py",
]

#: The setup.py commands that build code; metadata, sdist and editable installs do not compile.
_BUILDING = {"build", "build_ext", "bdist_wheel", "install"}


class AllOrNothing(build_ext):
    """Builds every compiled module or none: the modules share one mypyc library, and a
    package with some of them but not that library would not import."""

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as exc:  # no compiler, no Python.h, a compiler error
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)
            self.extensions = []
            self.warn(f"replisession: compiling failed ({exc}); the package is pure Python")


def compiled_modules() -> list[Any]:
    if os.environ.get("REPLISESSION_COMPILE", "1") == "0" or sys.implementation.name != "cpython":
        return []
    if "editable_wheel" in sys.argv or "develop" in sys.argv or not _BUILDING & set(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify

        # Type-checks the compiled modules only: the build's environment may not have the
        # package's dependencies (starlette, uvloop) that other modules import.
        return mypycify(["--follow-imports=silent", *COMPILED], opt_level="3", group_name="replisession")
    except (Exception, SystemExit) as exc:  # mypyc missing, or its type check failed (it exits)
        print(f"replisession: not compiled ({exc!r}); the package is pure Python", file=sys.stderr)
        return []


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": AllOrNothing})
