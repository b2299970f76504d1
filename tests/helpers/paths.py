"""Where the checkout under test is, however deep a test file sits in tests/."""

import shutil
from pathlib import Path

# tests/helpers/paths.py -> the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"


def uv() -> str:
    """The uv that ``make install`` puts in build/uv (or one on PATH)."""
    found = REPO_ROOT / "build" / "uv" / "bin" / "uv"
    if found.is_file():
        return str(found)
    on_path = shutil.which("uv")
    assert on_path, "uv is not installed: run `make install` (it installs uv into build/uv)"
    return on_path
