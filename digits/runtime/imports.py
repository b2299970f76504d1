"""Which modules of this repository a script needs, read from its source (nothing is imported).

The train stage keys its checkpoints by this code, and ``tests/test_layout.py`` checks that
each stage's dvc.yaml deps list exactly it, so both agree on what "the stage's code" is.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "digits"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from digits.model import networks` imports the module digits.model.networks.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def library_closure(script: Path, root: Path = REPO_ROOT) -> set[Path]:
    """The files of the ``digits`` modules ``script`` needs, transitively."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        for name in imported_modules(pending.pop()):
            if name.split(".")[0] != LIBRARY:
                continue
            path = (root / Path(*name.split("."))).with_suffix(".py")
            if path.is_file() and path not in seen:
                seen.add(path)
                pending.append(path)
    return seen
