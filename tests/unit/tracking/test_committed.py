"""Until a first run's results are committed, the commands that compare with a commit say so in
one line, with the git command that commits them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT
from helpers.venvmake import venv_make

from digits.tracking.committed import COMMIT_COMMAND, RESULTS, uncommitted_hint

ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def run(root: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A git + DVC repository with a commit, a Makefile and no results: a fresh clone."""
    root = tmp_path / "repo"
    root.mkdir()
    run(root, "git", "init", "-q", "-b", "main")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO_ROOT / "Makefile", root / "Makefile")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "the project")
    return root


def commit_results(root: Path) -> None:
    for path in RESULTS:
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_text("{}\n" if path.endswith(".json") else "schema: '2.0'\n")
    (root / "params.yaml").write_text("data:\n  dataset: fashion-mnist\n")
    run(root, "sh", "-c", COMMIT_COMMAND.replace("plots", ""))  # no plots in this repository


def test_the_hint_names_what_to_commit_until_results_are_committed(fresh):
    hint = uncommitted_hint("HEAD", fresh)
    assert hint is not None and COMMIT_COMMAND in hint and "\n" not in hint
    assert all(path in hint for path in RESULTS)
    assert "params.yaml" in hint, "the params that made the results are committed with them"
    commit_results(fresh)
    assert uncommitted_hint("HEAD", fresh) is None
    assert run(fresh, sys.executable, "-m", "digits.tracking.committed").stdout == ""


@pytest.mark.slow
def test_each_comparing_command_says_so_when_nothing_is_committed(fresh):
    hint = uncommitted_hint("HEAD", fresh)
    assert run(fresh, sys.executable, "-m", "digits.tracking.committed").stdout == hint + "\n"

    gate = run(fresh, sys.executable, "-m", "review.gate", "--base", "HEAD", check=False)
    assert gate.returncode == 1 and gate.stderr == f"error: {hint}\n"
    report = run(fresh, sys.executable, "-m", "review.report", "--base", "HEAD", check=False)
    assert report.stdout.splitlines()[0] == hint
    best = run(fresh, sys.executable, "-m", "search.best")
    assert best.stdout.splitlines()[0] == hint
    experiments = run(fresh, *venv_make(fresh, "--no-print-directory", "exps"))
    assert experiments.stdout.splitlines()[0] == hint
