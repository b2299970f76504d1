"""Fault injection, end to end, for stops (issue 19): SIGTERM once the model is saved, SIGHUP
from a closed terminal, and SIGTERM to `dvc repro` itself: a stage's outputs are all new or
all as they were, and a stage whose dvc is gone replaces nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.failures import (
    TRAIN_OUTPUTS,
    leftovers,
    retrain_params,
    snapshot,
    start_long_training,
    start_train_stage,
    track,
)

from digits.tracking import stage_run

pytestmark = pytest.mark.slow


def test_sigterm_once_the_model_changes_leaves_every_output_of_the_run(committed, store_template):
    """The model changes last, in one step with the run file, metrics and history: a
    SIGTERM sent the moment it changes finds them all new, and the run file names the run
    that holds them."""
    track(committed, store_template)
    retrain_params(committed)
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    model = committed.root / "models" / "model.keras"
    first = model.stat()
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.train"], cwd=committed.root, env=committed.env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while process.poll() is None:
            now = model.stat()
            if (now.st_ino, now.st_mtime_ns) != (first.st_ino, first.st_mtime_ns):
                process.terminate()
                break
            time.sleep(0.001)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode in (0, 143), stderr
    after = snapshot(committed.root, TRAIN_OUTPUTS)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == set(TRAIN_OUTPUTS), "outputs of one run change together"
    if process.returncode == 143:
        assert "terminated after replacing models/model.keras" in stderr
    run_id = stage_run.read_run_file(committed.root / "models" / "mlflow_run.json")
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{committed.root / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    logged = json.loads((committed.root / "metrics" / "train.json").read_text())
    assert run.data.metrics["train/val_accuracy"] == pytest.approx(logged["val_accuracy"])
    assert leftovers(committed.root) == []


def test_sighup_from_a_closed_terminal_stops_training_and_keeps_the_outputs(committed):
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    process, lines = start_train_stage(committed)
    try:
        sent = time.monotonic()
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=120) == 129
        print(f"stopped {time.monotonic() - sent:.1f} s after SIGHUP")
    finally:
        process.kill()
    output = "".join(list(lines.queue))
    assert "hung up: nothing was replaced; the previous outputs are in place" in output
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    assert leftovers(committed.root) == []


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def test_sigterm_to_dvc_repro_stops_its_stage_without_replacing_anything(committed):
    """What a CI runner or a scheduler does: SIGTERM to the process it started, `dvc`.

    With SHELL unset, as under a CI runner, dvc runs the command with `/bin/sh -c`; dash
    forks for it where bash replaces itself, so the stage's own parent would be a shell
    that outlives dvc. The `exec` in dvc.yaml makes the stage dvc's child on every shell."""
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    lock_before = (committed.root / "dvc.lock").read_text()
    committed = dataclasses.replace(committed, env={**committed.env, "SHELL": "/bin/sh"})
    process, lines = start_long_training(committed)
    try:
        (train,) = children_of(process.pid)
        command = (Path("/proc") / str(train) / "cmdline").read_bytes().split(b"\0")
        assert command[1:3] == [b"-m", b"stages.train"], f"dvc's child is not the stage: {command}"
        sent = time.monotonic()
        process.terminate()  # dvc only, not its process group
        assert process.wait(timeout=60) != 0
        while alive(train) and time.monotonic() - sent < 60:
            time.sleep(0.1)
        stopped = time.monotonic() - sent
        output = "".join(list(lines.queue))
        assert not alive(train), f"the train stage outlived dvc by a minute:\n{output[-4000:]}"
        print(f"train stage stopped {stopped:.1f} s after dvc got SIGTERM")
        assert stopped < 30
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(1)
    output = "".join(list(lines.queue))
    assert "terminated: nothing was replaced" in output
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    assert (committed.root / "dvc.lock").read_text() == lock_before
    assert leftovers(committed.root) == []
