"""The tests' own layout, read from the files (nothing is imported): which library
sub-packages and stages have tests, and which test files import other test files."""

from __future__ import annotations

import ast
import re
from pathlib import Path


def has_tests(folder: Path) -> bool:
    """Whether ``folder`` (at any depth) holds a ``test_*.py`` file with a test function."""
    return any(
        re.search(r"^def test_", path.read_text(), re.MULTILINE)
        for path in folder.rglob("test_*.py")
    )


def untested_packages(library: Path, unit_tests: Path) -> list[str]:
    """The sub-packages of ``library`` (folders with an ``__init__.py``) whose namesake
    folder under ``unit_tests`` is missing or holds no test."""
    packages = sorted(path.parent.name for path in library.glob("*/__init__.py"))
    return [name for name in packages if not has_tests(unit_tests / name)]


def untested_stages(stages: list[str], tests: Path) -> list[str]:
    """The stages that no test file imports (``from stages import train``) or runs
    (``python -m stages.train``)."""
    texts = [path.read_text() for path in tests.rglob("test_*.py")]
    return [
        stage
        for stage in stages
        if not any(
            re.search(rf"\bstages\.{stage}\b|^\s*from stages import [^\n]*\b{stage}\b", text, re.M)
            for text in texts
        )
    ]


def imported_modules(path: Path) -> set[str]:
    """The top-level names of the modules ``path`` imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def files_importing_test_files(tests: Path) -> dict[str, set[str]]:
    """Test file (relative to ``tests``) -> the ``test_*`` modules it imports."""
    found = {}
    for path in sorted(tests.rglob("test_*.py")):
        imported = {name for name in imported_modules(path) if name.startswith("test_")}
        if imported:
            found[path.relative_to(tests).as_posix()] = imported
    return found
