"""End to end on tiny data: a 2x2 grid sweep through the DVC queue, and ranking the
experiments on validation and applying the winner (search/best.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ProjectCopy
from helpers.dvcqueue import WAIT_S, experiments, with_data
from ruamel.yaml import YAML

from search.experiments import SUCCESS, start_queue

# Each test runs several experiments; on a loaded 2-core machine that can take many minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def wait_for_queue(project: ProjectCopy) -> None:
    deadline = time.monotonic() + WAIT_S
    while any(
        word in project.run("dvc", "queue", "status").stdout for word in ("Queued", "Running")
    ):
        assert time.monotonic() < deadline, project.run("dvc", "queue", "status").stdout
        time.sleep(2)


def best(project: ProjectCopy, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return project.run(sys.executable, "-m", "search.best", *args, check=check)


def test_a_2x2_sweep_gives_four_experiments_and_four_tagged_runs_and_best_applies_the_winner(
    project, store_template
):
    import mlflow

    with_data(project, tracking={"enabled": True})
    shutil.copy(store_template, project.root / "mlflow.db")
    queued = project.run(
        "dvc", "exp", "run", "--queue", "-n", "fc",
        "-S", "train.fc_size=8,32", "-S", "train.learning_rate=1e-3,1e-2",
    )  # fmt: skip
    assert queued.stdout.count("Queued experiment") == 4, queued.stdout
    try:
        start_queue(2, project.root, project.env)  # workers must not hold our pipes
        wait_for_queue(project)
    finally:
        project.run("dvc", "queue", "stop", check=False)

    found = experiments(project)
    grid = {(8, 1e-3), (8, 1e-2), (32, 1e-3), (32, 1e-2)}
    assert set(found) == {"fc-1", "fc-2", "fc-3", "fc-4"}
    assert all(row.state == SUCCESS for row in found.values())
    cells = {
        (row.params["train.fc_size"], row.params["train.learning_rate"]) for row in found.values()
    }
    assert cells == grid

    store = mlflow.MlflowClient(f"sqlite:///{project.root / 'mlflow.db'}")
    (experiment,) = [found for found in store.search_experiments() if found.name == "digits"]
    runs = {
        run.data.tags["dvc.experiment"]: run
        for run in store.search_runs([experiment.experiment_id])
    }
    assert set(runs) == set(found)
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.info.run_name == name
        assert run.data.params["train.fc_size"] == str(found[name].params["train.fc_size"])

    # The winner by MLflow's own record of validation accuracy, found independently of DVC.
    ranked = sorted(runs, key=lambda name: -runs[name].data.metrics["train/val_accuracy"])
    shown = best(project, "--metric", "train.val_accuracy")
    rows = [line.split() for line in shown.stdout.splitlines()[1:5]]
    assert [row[1] for row in rows] == ranked or (
        runs[ranked[0]].data.metrics["train/val_accuracy"]
        == runs[ranked[1]].data.metrics["train/val_accuracy"]
    ), shown.stdout
    winner = rows[0][1]
    best(project, "--metric", "train.val_accuracy", "--apply")
    applied = YAML(typ="safe", pure=True).load((project.root / "params.yaml").read_text())
    assert applied["train"]["fc_size"] == found[winner].params["train.fc_size"]
    assert applied["train"]["learning_rate"] == found[winner].params["train.learning_rate"]


def save_experiment(project: ProjectCopy, name: str, fc_size: int, **metrics: float) -> None:
    """A DVC experiment whose metrics the test chose: edit params and metrics, `dvc exp save`."""
    project.set_params({"train": {"fc_size": fc_size}})
    for file, key in (("train", "val_accuracy"), ("train", "val_loss"), ("eval", "accuracy")):
        path = project.root / "metrics" / f"{file}.json"
        values = json.loads(path.read_text())
        values[key] = metrics[f"{file}_{key}"]
        path.write_text(json.dumps(values))
    project.run("dvc", "exp", "save", "-n", name)
    project.run("git", "checkout", "params.yaml", "metrics")


def test_best_ranks_experiments_with_known_metrics_on_validation_never_on_test(committed):
    empty = best(committed).stdout
    assert empty.startswith("no experiments of commit") and empty.count("\n") == 1, empty

    save_experiment(
        committed, "small", 8, train_val_accuracy=0.70, train_val_loss=0.9, eval_accuracy=0.99
    )
    save_experiment(
        committed, "wide", 64, train_val_accuracy=0.90, train_val_loss=0.4, eval_accuracy=0.60
    )
    save_experiment(
        committed, "mid", 32, train_val_accuracy=0.80, train_val_loss=0.2, eval_accuracy=0.70
    )

    shown = best(committed, "--metric", "train.val_accuracy").stdout.splitlines()
    assert shown[0].split()[:4] == ["#", "experiment", "train.fc_size", "train.val_accuracy"]
    assert [line.split() for line in shown[1:4]] == [
        ["1", "wide", "64", "0.9000", "0.6000"],
        ["2", "mid", "32", "0.8000", "0.7000"],
        ["3", "small", "8", "0.7000", "0.9900"],
    ]
    by_loss = best(committed, "--metric", "train.val_loss").stdout.splitlines()
    assert [line.split()[1] for line in by_loss[1:4]] == ["mid", "wide", "small"]

    unknown = best(committed, "--metric", "train.val_acc", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: no experiment has the metric 'train.val_acc'")
    assert "train.val_accuracy" in unknown.stderr and "Traceback" not in unknown.stderr
    on_test = best(committed, "--metric", "eval.accuracy", check=False)
    assert on_test.returncode == 1 and "test set" in on_test.stderr

    assert "fc_size: 128" in (committed.root / "params.yaml").read_text()  # nothing applied yet
    best(committed, "--apply")
    applied = YAML(typ="safe", pure=True).load((committed.root / "params.yaml").read_text())
    assert applied["train"]["fc_size"] == 64
    assert json.loads((committed.root / "metrics/train.json").read_text())["val_accuracy"] == 0.9
