"""Fault injection and bad input, end to end: every failure names the problem and loses
nothing already produced (issue: reliability). Unit-level cases live beside their modules
(test_download, test_idx, test_params, test_models); these run the real stages and DVC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers.failures import TIMING_KEYS, leftovers, start_long_training, start_train_stage
from helpers.paths import REPO_ROOT

from digits.errors import DataError, PipelineError
from digits.model.networks import load_model

pytestmark = pytest.mark.slow


def stage(project, name: str, *args: str) -> subprocess.CompletedProcess:
    return project.run(sys.executable, "-m", f"stages.{name}", *args, check=False)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.fc_sise=3", "Could not override 'train.fc_sise'"),  # DVC refuses it
        ("+train.fc_sise=3", "error: unknown key train.fc_sise; allowed keys in 'train'"),
        ("train.steps=abc", "error: train.steps: expected an integer, got 'abc' (str)"),
        ("train.learning_rate=-1", "error: train.learning_rate: -1.0 is out of range"),
        ("train.batch_size=0", "error: train.batch_size: 0 is out of range"),
        ("data.validation_size=500", "error: data.validation_size: 500 leaves no training"),
    ],
)
def test_bad_param_from_exp_run_stops_before_any_work(committed, setting, message):
    lock_before = (committed.root / "dvc.lock").read_text()

    result = committed.run("dvc", "exp", "run", "-S", setting, check=False)
    committed.run("git", "checkout", "--", "params.yaml")

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    assert "training cnn for" not in output, "the stage must fail before it loads data"
    assert "Traceback" not in output
    assert (committed.root / "dvc.lock").read_text() == lock_before
    assert committed.run("dvc", "exp", "list", "--all-commits").stdout.strip() == ""
    assert leftovers(committed.root) == []
    assert committed.run("git", "status", "--porcelain").stdout == "", "outputs were lost"


def test_ctrl_c_during_training_loses_nothing_and_the_next_run_is_clean(committed):
    model_before = (committed.root / "models" / "model.keras").read_bytes()
    lock_before = (committed.root / "dvc.lock").read_text()
    process, _ = start_long_training(committed)

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert process.wait(timeout=120) != 0

    assert (committed.root / "models" / "model.keras").read_bytes() == model_before
    assert (committed.root / "dvc.lock").read_text() == lock_before
    assert leftovers(committed.root) == []
    # Every committed output is still in the workspace: back to the committed params, the
    # pipeline is up to date again without retraining.
    committed.run("git", "checkout", "--", "params.yaml")
    assert committed.run("git", "status", "--porcelain").stdout == ""
    assert committed.run("dvc", "status").stdout.strip().endswith("up to date.")


def test_sigterm_to_the_train_stage_keeps_the_previous_outputs(committed):
    outputs = ["models/model.keras", "metrics/train.json", "plots/train_history.csv"]
    before = {name: (committed.root / name).read_bytes() for name in outputs}
    process, _ = start_train_stage(committed)

    process.terminate()

    assert process.wait(timeout=120) == 143
    assert {name: (committed.root / name).read_bytes() for name in outputs} == before
    assert leftovers(committed.root) == []


@pytest.mark.parametrize(
    ("damaged", "stage_name", "message"),
    [
        ("models/model.keras", "evaluate", "models/model.keras is damaged or not a Keras model"),
        ("data/processed/test.npz", "evaluate", "data/processed/test.npz is damaged"),
        ("data/processed/train.npz", "train", "data/processed/train.npz is damaged"),
    ],
)
def test_damaged_file_between_stages_gives_a_clear_error(committed, damaged, stage_name, message):
    path = committed.root / damaged
    path.unlink()  # DVC links cached files read-only; replace, don't write through
    path.write_bytes(b"PK\x03\x04 not really a zip archive")

    result = stage(committed, stage_name)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_outputs_outside_the_workspace_are_refused(committed):
    outside = committed.root.parent / "eval.json"
    result = stage(committed, "evaluate", "--metrics", str(outside))
    assert result.returncode == 1
    assert "is outside the workspace" in result.stderr
    assert not outside.exists()


def test_a_model_file_cannot_carry_code_into_the_pipeline(tmp_path):
    """A Lambda layer stores Python bytecode; Keras safe mode refuses to deserialize it."""
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "model.keras"
    keras.Model(inputs, outputs).save(path)

    with pytest.raises(DataError, match=r"model.keras is damaged or not a Keras model .*safe"):
        load_model(path)
    assert issubclass(DataError, PipelineError)


def test_same_params_and_data_give_identical_metrics(committed):
    def metrics() -> dict:
        found = {}
        names = ("data.json", "train.json", "train_run.json", "eval.json")
        for name in (f"metrics/{file}" for file in names):
            values = json.loads((committed.root / name).read_text())
            found[name] = {key: value for key, value in values.items() if key not in TIMING_KEYS}
        return found

    first = metrics()
    weights = load_model(committed.root / "models" / "model.keras").get_weights()
    committed.run("dvc", "repro", "--force")
    assert metrics() == first
    again = load_model(committed.root / "models" / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, again, strict=True))


def test_make_ui_listens_on_loopback_only():
    """The MLflow UI has no login: `make ui` must not listen beyond this machine."""
    repo_root = REPO_ROOT
    planned = subprocess.run(
        ["make", "--dry-run", "-C", str(repo_root), "ui"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (command,) = [line for line in planned.splitlines() if " ui " in f"{line} "]
    assert "--host 127.0.0.1" in command
    assert "0.0.0.0" not in command
