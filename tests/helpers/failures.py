"""Stages and `dvc repro` run in a project copy and stopped mid-training, and what a run
leaves behind: shared by the fault-injection and same-bytes tests in tests/e2e/."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ProjectCopy

TIMING_KEYS = {"training_seconds", "images_per_second"}


def leftovers(root: Path) -> list[str]:
    """Temporary files that atomic writes failed to clean up."""
    skip = {".git", ".dvc"}
    return [
        str(path.relative_to(root))
        for path in root.rglob(".*.tmp*")
        if not skip & set(path.relative_to(root).parts)
    ]


def interruptible() -> None:
    """In the child: take SIGINT as a terminal's Ctrl-C does, even when the test runner was
    started in the background (where SIGINT is inherited as ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_lines_into(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def start_long_training(project) -> tuple[subprocess.Popen, queue.Queue]:
    """Start `dvc repro` with a long training run in its own process group; return once the
    train stage has printed its first progress line."""
    project.set_params({"train": {"steps": 200000, "eval_every": 20}})
    process = subprocess.Popen(
        ["dvc", "repro"], cwd=project.root, env=project.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=interruptible,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines_into, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + 300
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("step "):
            return process, lines
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("training never printed progress:\n" + "".join(seen))


def start_train_stage(project) -> tuple[subprocess.Popen, queue.Queue]:
    """Start the train stage on its own (as `python -m stages.train`, no dvc) on a long run;
    return once it has printed its first progress line (it is killed if it never does)."""
    project.set_params({"train": {"steps": 200000, "eval_every": 20}})
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.train"], cwd=project.root, env=project.env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines_into, args=(process.stdout, lines), daemon=True).start()
    try:
        while not lines.get(timeout=300).startswith("step "):
            pass
    except BaseException:
        process.kill()
        raise
    return process, lines


TRAIN_OUTPUTS = (
    "models/model.keras",
    "models/mlflow_run.json",
    "metrics/train.json",
    "metrics/train_run.json",
    "plots/train_history.csv",
)


def snapshot(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each output file (a folder: of each file in it)."""
    found = {}
    for name in names:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            found[str(file.relative_to(root))] = file.read_bytes()
    return found


def track(project: ProjectCopy, store_template: Path) -> None:
    """Turn MLflow tracking on, with a fresh store in the project."""
    project.set_params({"tracking": {"enabled": True}})
    shutil.copy(store_template, project.root / "mlflow.db")


def retrain_params(project: ProjectCopy) -> None:
    """Params for which train gives other outputs than the committed ones."""
    project.set_params({"train": {"steps": 30}})


def store_runs(database: Path) -> list:
    """Every run in the SQLite store ``database``, of every experiment."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{database}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments)
