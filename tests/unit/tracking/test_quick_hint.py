"""The line `make quick` ends with gives a full run that keeps the user's other params edits,
such as the switch to Fashion-MNIST of the offline route."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from digits.tracking.quick_hint import RESET_ALL, full_run_hint

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
QUICK_SETTINGS = {"train.steps": 500, "train.eval_every": 100}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=ENV, check=True, capture_output=True)


def edit(text: str, settings: dict[str, object]) -> str:
    """``text`` (params.yaml) with ``section.key: value`` lines set, as `dvc exp run -S` does."""
    for dotted, value in settings.items():
        key = dotted.split(".")[-1]
        text, count = re.subn(rf"^(\s+{key}:\s*)\S+", rf"\g<1>{value}", text, count=1, flags=re.M)
        assert count == 1, f"{key} not in params.yaml"
    return text


def hint_in(root: Path) -> str:
    """What `python -m digits.tracking.quick_hint` prints in ``root``."""
    result = subprocess.run(
        [sys.executable, "-m", "digits.tracking.quick_hint"],
        cwd=root,
        env={**ENV, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def clone(tmp_path) -> Path:
    """A git repository whose commit holds the project's params.yaml."""
    root = tmp_path / "clone"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    git(root, "add", "params.yaml")
    git(root, "commit", "-q", "-m", "params")
    return root


def test_after_a_plain_quick_run_checking_out_params_is_the_full_run(clone):
    params = clone / "params.yaml"
    params.write_text(edit(params.read_text(), QUICK_SETTINGS))
    assert hint_in(clone) == f"for the full run: {RESET_ALL}"


def test_after_the_offline_switch_the_full_run_keeps_fashion_mnist(clone):
    params = clone / "params.yaml"
    committed = YAML(typ="safe", pure=True).load(params.read_text())
    # The README's offline route, then `make quick`.
    switched = params.read_text().replace("dataset: mnist ", "dataset: fashion-mnist")
    params.write_text(edit(switched, QUICK_SETTINGS))
    hint = hint_in(clone)
    assert "git checkout params.yaml &&" not in hint
    assert "data.dataset" in hint  # names the edit it keeps
    # Applying the printed -S settings gives the committed steps with Fashion-MNIST kept.
    settings = dict(re.findall(r"-S (\S+)=(\S+)", hint))
    assert set(settings) == set(QUICK_SETTINGS)
    after = YAML(typ="safe", pure=True).load(edit(params.read_text(), settings))
    assert after["train"]["steps"] == committed["train"]["steps"]
    assert after["train"]["eval_every"] == committed["train"]["eval_every"]
    assert after["data"]["dataset"] == "fashion-mnist"


def test_without_committed_params_the_hint_names_the_keys_to_set_back():
    assert "train.steps and train.eval_every" in full_run_hint(None, {"train": {"steps": 500}})
