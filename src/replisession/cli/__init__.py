"""The ``replisession`` command (console script and ``python -m replisession``).

Each subcommand lives in its own module of this package, which provides
``register(subparsers)``: it adds its parser (with its own ``--help``) and sets
``handler`` to a function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: The subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("demo", "lbconfig", "status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replisession",
        description="Replicated sessions for Python web apps, Tomcat-cluster style.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status
