"""params.yaml for tests that call a stage's main(): the project's file with some keys changed."""

from __future__ import annotations

from pathlib import Path

from digits.params import update_params_file
from helpers.paths import REPO_ROOT

# MLflow logging has its own tests (test_tracking*.py); the other stage tests run without it.
TRACKING_OFF = {"tracking": {"enabled": False}}


def params_copy(folder: Path, updates: dict[str, dict]) -> Path:
    """Write ``folder/params.yaml``: the project's params with ``updates`` merged in, the way
    ``dvc exp run -S`` merges them (a key the file lacks is an error)."""
    path = folder / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text())
    update_params_file(path, updates)
    return path
