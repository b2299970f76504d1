"""`make` on the test's virtualenv, for tests that run a Makefile target in a project copy."""

from __future__ import annotations

import sys
from pathlib import Path


def venv_make(root: Path, *args: str) -> list[str]:
    """`make` in ``root`` on this test's virtualenv, told not to (re)install into it."""
    venv = Path(sys.executable).parent.parent
    keep = [f"{venv}/.installed", f"{venv}/.installed-test", f"{venv}/bin/python"]
    return ["make", "-C", str(root), f"VENV={venv}", *(f"--old-file={name}" for name in keep),
            *args]  # fmt: skip
