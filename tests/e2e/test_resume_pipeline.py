"""End to end: `dvc repro` interrupted during training (Ctrl-C, SIGTERM, kill -9) resumes
from the checkpoint, into the same MLflow run, to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import ProjectCopy

from digits.model.networks import load_model
from teamstack.processes import wait_gone

pytestmark = pytest.mark.slow

# Long enough to interrupt half-way on the tiny dataset, short enough to finish in seconds.
STEPS, EVAL_EVERY = 900, 100
LONG_RUN = {"train": {"steps": STEPS, "eval_every": EVAL_EVERY, "dropout": 0.25}}
CHECKPOINT = "models/checkpoint.npz"


def interruptible() -> None:
    """In the child: take SIGINT as a terminal's Ctrl-C does, even under a background runner."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def checkpoint_step(project: ProjectCopy) -> int:
    with np.load(project.root / CHECKPOINT) as archive:
        return json.loads(str(archive["record"]))["step"]


def wait_for_group(group: int, timeout: float = 120) -> None:
    """Wait until every process of ``group`` has exited: on SIGTERM, DVC exits at once while
    the train stage is still ending its MLflow run."""
    if not wait_gone(group, timeout):
        pytest.fail(f"processes of group {group} still running after {timeout} s")


def interrupt_half_way(project: ProjectCopy, signal_number: int) -> str:
    """Run `dvc repro`, send ``signal_number`` to its process group once training has passed
    a third of its steps, and return what it printed."""
    process = subprocess.Popen(
        ["dvc", "repro"], cwd=project.root, env=project.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=interruptible,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            progress = re.match(rf"step +(\d+)/{STEPS}", line)
            if progress and int(progress.group(1)) >= STEPS // 3:
                os.killpg(process.pid, signal_number)
                break
        else:
            pytest.fail("training never got a third of the way:\n" + "".join(seen))
        assert process.wait(timeout=120) != 0
        wait_for_group(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(0.5)  # let the reader drain what is left
    while not lines.empty():
        seen.append(lines.get())
    return "".join(seen)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, committed_template) -> dict:
    """Weights and history of the long run, trained without interruption (tracking off: it
    does not change the arithmetic)."""
    root = tmp_path_factory.mktemp("uninterrupted") / "project"
    shutil.copytree(
        committed_template.root,
        root,
        symlinks=True,
        ignore=lambda folder, names: ["tmp"] if folder.endswith(".dvc") else [],
    )
    project = ProjectCopy(root, committed_template.env)
    project.set_params(LONG_RUN)
    result = project.run("dvc", "repro", "train")
    assert "resuming" not in result.stdout
    return {
        "weights": load_model(root / "models" / "model.keras").get_weights(),
        "history": pd.read_csv(root / "plots" / "train_history.csv"),
    }


@pytest.mark.parametrize(
    "signal_number",
    [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
    ids=["ctrl-c", "sigterm", "kill-9"],
)
def test_interrupted_training_resumes_into_its_run_and_ends_as_if_never_stopped(
    committed, store_template, uninterrupted, signal_number
):
    import mlflow

    shutil.copy(store_template, committed.root / "mlflow.db")
    committed.set_params({**LONG_RUN, "tracking": {"enabled": True}})

    first = interrupt_half_way(committed, signal_number)

    assert (committed.root / CHECKPOINT).exists(), first
    step = checkpoint_step(committed)
    assert STEPS // 3 <= step < STEPS
    assert committed.run("git", "check-ignore", CHECKPOINT).stdout.strip() == CHECKPOINT
    store = mlflow.MlflowClient(f"sqlite:///{committed.root / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("digits").experiment_id
    (interrupted_run,) = store.search_runs([experiment])
    expected = "RUNNING" if signal_number == signal.SIGKILL else "KILLED"
    assert interrupted_run.info.status == expected

    second = committed.run("dvc", "repro")

    assert f"resuming from step {step} ({CHECKPOINT})" in second.stdout
    progress = re.findall(rf"^step +(\d+)/{STEPS}", second.stdout, flags=re.MULTILINE)
    assert int(progress[0]) == step + EVAL_EVERY, "training continued after the checkpoint"
    assert not (committed.root / CHECKPOINT).exists(), "deleted when the stage completes"
    (run,) = store.search_runs([experiment])
    assert run.info.run_id == interrupted_run.info.run_id, "one run, continued"
    assert run.info.status == "FINISHED"
    for name in ("train_loss", "val_loss", "val_accuracy"):
        steps = [point.step for point in store.get_metric_history(run.info.run_id, name)]
        expected_steps = list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
        assert sorted(steps) == expected_steps, f"{name}: no gap, no repeat"
    assert "test/accuracy" in run.data.metrics

    weights = load_model(committed.root / "models" / "model.keras").get_weights()
    for resumed, reference in zip(weights, uninterrupted["weights"], strict=True):
        np.testing.assert_array_equal(resumed, reference)
    pd.testing.assert_frame_equal(
        pd.read_csv(committed.root / "plots" / "train_history.csv").drop(columns="seconds"),
        uninterrupted["history"].drop(columns="seconds"),
    )
