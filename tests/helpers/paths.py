"""Where the checkout under test is, however deep a test file sits in tests/."""

from pathlib import Path

# tests/helpers/paths.py -> the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
