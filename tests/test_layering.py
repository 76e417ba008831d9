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


# DESIGN.md: cli -> web -> node -> net -> wire -> core; config and errors from anywhere.
LAYERS = ["core", "wire", "net", "node", "web", "cli"]
ANYWHERE = {"errors", "config", "cluster_config"}


def _imported_packages(path: Path) -> set[str]:
    """The top-level replisession modules a module imports (relative imports resolved)."""
    package = path.parent.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(package[: len(package) - (node.level - 1)]) if node.level > 1 else list(package)
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:  # "from . import x" at the top level
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("replisession."):
            found.add(node.module.split(".")[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_dependencies_point_one_way(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) | ANYWHERE
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        assert _imported_packages(path) <= allowed, path
