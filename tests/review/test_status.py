"""The pipeline-status check: missing data is not staleness, changed code or params are."""

from __future__ import annotations

import subprocess

import pytest
from conftest import ProjectCopy

from review.status import PipelineStatus, describe, stage_changes

# `dvc status --json` of a fresh clone without a DVC remote: every stage misses its data.
CLONE_STATUS = {
    "download": [{"changed outs": {"data/raw": "not in cache"}}],
    "train": [
        {"changed deps": {"data/processed/train.npz": "deleted"}},
        {"changed outs": {"models/model.keras": "not in cache"}},
    ],
}


def test_missing_data_alone_is_no_change():
    assert stage_changes(CLONE_STATUS) == {}


def test_changed_code_params_and_commands_are_listed_per_stage():
    status = {
        "train": [
            {"changed deps": {"stages/train.py": "modified", "data/processed/train.npz": "deleted",
                              "params.yaml": {"train.fc_size": "modified"}}},
            "changed checksum",
        ],
        "evaluate": [{"changed outs": {"metrics/eval.json": "modified"}}],
    }  # fmt: skip
    assert stage_changes(status) == {
        "train": ["stages/train.py modified", "params.yaml: train.fc_size modified",
                  "changed checksum"],
        "evaluate": ["metrics/eval.json modified"],
    }  # fmt: skip


def test_the_line_names_stages_and_caps_long_lists():
    changes = {"train": [f"stages/f{k}.py modified" for k in range(5)]}
    line = describe(PipelineStatus(False, ["train", "evaluate"], changes, ""))
    assert "not up to date" in line
    assert (
        "`train`: stages/f0.py modified, stages/f1.py modified, stages/f2.py modified and 2 more"
        in line
    )
    assert "`evaluate`: inputs changed upstream" in line
    assert "up to date" in describe(PipelineStatus(True, [], {}, ""))
    assert "not up to date" not in describe(PipelineStatus(True, [], {}, ""))


def clone_without_data(project: ProjectCopy, name: str) -> ProjectCopy:
    """A git clone of the project, as CI checks it out: no data, models or DVC cache."""
    root = project.root.parent / name
    subprocess.run(["git", "clone", "-q", str(project.root), str(root)], check=True)
    return ProjectCopy(root, project.env)


@pytest.mark.slow
def test_check_passes_in_a_clone_without_data_and_fails_on_stale_metrics(committed):
    # A project whose whole pipeline ran and was committed (a copy of the session's one).
    project = committed
    clone = clone_without_data(project, "clone")
    assert clone.run("python", "-m", "review.status").stdout.startswith("🟢")

    # A param changed without rerunning the pipeline.
    clone.set_params({"train": {"fc_size": 64}})
    stale = clone.run("python", "-m", "review.status", check=False)
    assert stale.returncode == 1
    assert "`train`: params.yaml: train modified" in stale.stdout

    # Only train rerun: dvc.lock's evaluate entry still names the old model, so its metrics
    # are stale though nothing of evaluate's own changed.
    project.set_params({"train": {"fc_size": 64}})
    project.run("dvc", "repro", "train")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "train only")
    partial = clone_without_data(project, "partial")
    result = partial.run("python", "-m", "review.status", check=False)
    assert result.returncode == 1, result.stdout
    assert "`evaluate`: inputs changed upstream" in result.stdout
