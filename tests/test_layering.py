"""DESIGN.md's layering, enforced: core/ (and wire/, when it exists) does no I/O and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import replisession

PACKAGE = Path(replisession.__file__).parent
FORBIDDEN = {"asyncio", "socket", "threading", "selectors", "ssl", "time", "subprocess"}
SANS_IO = [path for folder in ("core", "wire") for path in sorted((PACKAGE / folder).glob("*.py"))]


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sans_io_modules_import_no_io_or_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported & FORBIDDEN == set()


def test_sans_io_modules_do_not_reach_up_the_layers() -> None:
    for path in SANS_IO:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module in ("errors", None) or node.module.startswith("core"), (path, node.module)
