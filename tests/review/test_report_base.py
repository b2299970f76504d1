"""`make report BASE=main` run on main after committing the change compares the commit with
itself: the report says so and how to review the committed work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT

from review.dvcdata import same_commit_note

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=ENV, check=True, capture_output=True)


def commit(root: Path, text: str) -> None:
    (root / "params.yaml").write_text(text)
    git(root, "add", "params.yaml")
    git(root, "commit", "-q", "-m", text)


@pytest.fixture
def repo(tmp_path) -> Path:
    """main with a first run and the change committed on top of it."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, "fc_size: 128\n")
    commit(root, "fc_size: 256\n")
    return root


def test_base_that_is_the_checked_out_commit_gets_a_note(repo):
    note = same_commit_note("main", repo)
    assert note is not None and "\n" not in note
    assert "'main' is the commit checked out" in note
    assert "git switch -c" in note and "BASE=HEAD~1" in note


def test_another_commit_gets_none(repo):
    assert same_commit_note("HEAD~1", repo) is None
    git(repo, "switch", "-q", "-c", "wider")
    commit(repo, "fc_size: 512\n")
    assert same_commit_note("main", repo) is None


def test_a_base_that_is_no_commit_is_refused_without_the_commit_hint(repo):
    result = subprocess.run(
        [sys.executable, "-m", "review.report", "--base", "main-typo"],
        cwd=repo,
        env={**ENV, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "BASE 'main-typo' is not a commit" in result.stderr
    assert "holds no pipeline results" not in result.stdout
