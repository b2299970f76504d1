"""dvc started as `.venv/bin/dvc`, without the environment on PATH, runs its stages with the
project's interpreter: in the workspace and in an experiment's temporary copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digits.runtime import venv_hook

pytestmark = pytest.mark.slow


def path_without_the_venv(folder: Path) -> str:
    """A PATH without the project's environment, whose first ``python`` is not the project's:
    it exits 3 saying so (as another interpreter would fail to import the project)."""
    folder.mkdir()
    for name in ("python", "python3"):
        impostor = folder / name
        impostor.write_text("#!/bin/sh\necho 'not the project interpreter' >&2\nexit 3\n")
        impostor.chmod(0o755)
    return os.pathsep.join([str(folder), "/usr/bin", "/bin"])


def test_the_hook_is_installed_in_the_project_environment():
    site_packages = Path(sys.executable).parent.parent
    installed = list(site_packages.glob(f"lib*/python*/site-packages/{venv_hook.PTH_NAME}"))
    assert installed, "run `make install`: it installs digits/runtime/venv_hook.py's .pth file"
    assert installed[0].read_text() == venv_hook.PTH_LINE


def test_dvc_runs_its_stages_with_its_own_interpreter_without_the_venv_on_path(project, tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**project.env, "PATH": path_without_the_venv(tmp_path / "elsewhere")}
    env.pop("VIRTUAL_ENV", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [dvc, *args], cwd=project.root, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    run("repro", "preprocess")
    summary = json.loads((project.root / "metrics" / "data.json").read_text())
    assert summary["validation_images"] == 20
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "preprocessed")

    # An experiment in a temporary copy of the repository (.dvc/tmp/exps/...), where the
    # queue runs them too: no .venv there.
    run("exp", "run", "--temp", "-n", "elsewhere", "-S", "data.validation_size=30", "preprocess")
    shown = json.loads(run("exp", "show", "--json").stdout)
    (experiment,) = [
        entry["revs"][0]
        for commit in shown
        for entry in commit.get("experiments") or []
        if entry.get("name") == "elsewhere"
    ]
    metrics = experiment["data"]["metrics"]["metrics/data.json"]["data"]
    assert metrics["validation_images"] == 30
