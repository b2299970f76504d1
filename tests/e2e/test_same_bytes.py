"""Same inputs, same bytes (issue 19, item 10): two runs from scratch give identical files for
every output but the timing fields docs/pipeline.md names, and a retrain that changes nothing
reruns no later stage, with tracking off and on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import make_project, make_tiny_mirror
from helpers.failures import TIMING_KEYS, TRAIN_OUTPUTS, snapshot, store_runs, track
from ruamel.yaml import YAML

from digits.tracking import stage_run

pytestmark = pytest.mark.slow


def lock_outputs(root: Path) -> list[str]:
    """Every output path of every stage, as dvc.lock records them."""
    lock = YAML(typ="safe", pure=True).load((root / "dvc.lock").read_text())
    return [out["path"] for entry in lock["stages"].values() for out in entry.get("outs", [])]


def comparable(name: str, data: bytes) -> object:
    """An output's bytes, minus the timing fields docs/pipeline.md names."""
    if name == "metrics/train_run.json":
        values = json.loads(data)
        return {key: value for key, value in values.items() if key not in TIMING_KEYS}
    if name == "plots/train_history.csv":
        rows = list(csv.DictReader(data.decode().splitlines()))
        return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]
    return data


def test_two_runs_from_scratch_give_identical_bytes_for_every_output(tmp_path, committed_template):
    second = make_project(tmp_path / "second", make_tiny_mirror(tmp_path))
    second.run("dvc", "repro")
    names = lock_outputs(committed_template.root)
    assert {"data/processed", "models/model.keras", "plots/visualize"} <= set(names)
    first = snapshot(committed_template.root, tuple(names))
    again = snapshot(second.root, tuple(names))
    assert sorted(first) == sorted(again)
    assert len(first) > len(names), "the visualize folder's files are compared one by one"
    differing = [
        name for name in first if comparable(name, first[name]) != comparable(name, again[name])
    ]
    assert differing == []


def test_a_retrain_that_changes_nothing_reruns_no_later_stage(committed):
    model_before = (committed.root / "models" / "model.keras").read_bytes()
    committed.run("dvc", "repro", "--force", "--single-item", "train")
    assert (committed.root / "models" / "model.keras").read_bytes() == model_before
    status = committed.run("dvc", "status").stdout
    assert "evaluate" not in status and "visualize" not in status, status


def test_a_retrain_that_changes_nothing_with_tracking_on_reruns_no_later_stage(
    committed, store_template
):
    """The run file keeps naming the run of the unchanged model, so it keeps its bytes."""
    track(committed, store_template)
    committed.run("dvc", "repro")
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    retrained = committed.run("dvc", "repro", "--force", "--single-item", "train")
    after = snapshot(committed.root, TRAIN_OUTPUTS)
    differing = [
        name for name in before if comparable(name, before[name]) != comparable(name, after[name])
    ]
    assert differing == [], "only the timing fields differ: the model and run file do not"
    status = committed.run("dvc", "status").stdout
    assert "evaluate" not in status and "visualize" not in status, status
    kept = stage_run.read_run_file(committed.root / "models" / "mlflow_run.json")
    assert f"keeps naming its run {kept}" in retrained.stdout
    runs = {run.info.run_id: run for run in store_runs(committed.root / "mlflow.db")}
    (new,) = set(runs) - {kept}
    assert runs[new].data.tags[stage_run.SAME_MODEL_TAG] == kept
    assert runs[new].info.status == "FINISHED"
    assert "test/accuracy" in runs[kept].data.metrics, "the kept run holds the evaluation"
