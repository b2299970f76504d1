"""The trained model as a DVC artifact: declared in dvc.yaml, fetched by `dvc artifacts get`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML


def test_the_model_is_declared_as_a_model_artifact():
    dvc_yaml = YAML(typ="safe", pure=True).load((REPO_ROOT / "dvc.yaml").read_text())
    artifact = dvc_yaml["artifacts"]["digits-model"]
    assert artifact["type"] == "model" and artifact["path"] == "models/model.keras"
    assert artifact["desc"] and "keras" in artifact["labels"]
    train_outs = [next(iter(out)) if isinstance(out, dict) else out
                  for out in dvc_yaml["stages"]["train"]["outs"]]  # fmt: skip
    assert artifact["path"] in train_outs, "the artifact is the train stage's output"


@pytest.mark.slow
def test_dvc_artifacts_get_downloads_the_model_from_a_local_remote(committed, tmp_path):
    remote = tmp_path / "remote"
    committed.run("dvc", "remote", "add", "--default", "storage", str(remote))
    committed.run("dvc", "push", "models/model.keras")
    committed.run("git", "add", ".dvc/config")
    committed.run("git", "commit", "-q", "-m", "DVC remote: a local folder")
    # A version is a git tag in GTO's form, as `gto register` writes it.
    committed.run("git", "tag", "-a", "digits-model@v1.0.0", "-m", "digits-model v1.0.0")

    # From a clone, as a user would: nothing of the project's but its git history.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(committed.root), str(clone)], check=True)
    assert not (clone / "models" / "model.keras").exists()
    target = tmp_path / "downloaded.keras"
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "artifacts", "get", str(clone), "digits-model",
         "--out", str(target)],
        cwd=tmp_path, env=committed.env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.read_bytes() == (committed.root / "models" / "model.keras").read_bytes()
