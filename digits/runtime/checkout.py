"""Copies of this checkout, for the benchmark and the end-to-end tests to run the pipeline in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def checkout_files(root: Path) -> list[str]:
    """Files git tracks under ``root``, plus new ones it does not ignore (uncommitted work too)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if name and (root / name).is_file()]


def copy_checkout(root: Path, destination: Path) -> None:
    """Copy the files of ``checkout_files(root)`` into ``destination``, keeping their paths."""
    for name in checkout_files(root):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
