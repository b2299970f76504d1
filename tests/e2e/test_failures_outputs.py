"""Fault injection, end to end, for the outputs of a stage (issue 19): a full disk or a swap
that fails leaves all of a stage's outputs as they were and its MLflow run FAILED.
Stops: tests/e2e/test_failures_signals.py; identical bytes: tests/e2e/test_same_bytes.py."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProjectCopy
from helpers.failures import (
    TRAIN_OUTPUTS,
    leftovers,
    retrain_params,
    snapshot,
    store_runs,
    track,
)

pytestmark = pytest.mark.slow

EVALUATE_OUTPUTS = (
    "metrics/eval.json",
    "plots/confusion.csv",
    "plots/confusion.png",
    "plots/errors.png",
)


def stage(project: ProjectCopy, name: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run one stage as dvc.yaml does; return its result and how long it took."""
    started = time.monotonic()
    result = project.run(sys.executable, "-m", f"stages.{name}", check=False)
    return result, time.monotonic() - started


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[None]:
    """Mount a small tmpfs over ``folder``, holding what it held, and fill it to the last
    byte: a disk with no space left, for real. Skips where mounting is not allowed."""
    saved = folder.with_name(f"{folder.name}-before-mount")
    if folder.exists():
        shutil.copytree(folder, saved)
    else:
        saved.mkdir()
    used = sum(path.stat().st_size for path in saved.rglob("*") if path.is_file())
    folder.mkdir(exist_ok=True)
    size = f"size={used // 1024 + 256}k"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        with (folder / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while filler.write(b"\0" * 4096):
                pass
        with pytest.raises(OSError) as full:
            (folder / "one more byte").write_bytes(b"x")
        assert full.value.errno == errno.ENOSPC
        (folder / "one more byte").unlink(missing_ok=True)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            (folder / "filler").unlink()
        kept = folder.with_name(f"{folder.name}-on-full-disk")
        shutil.copytree(folder, kept)
        subprocess.run(["umount", str(folder)], check=True)
        shutil.rmtree(folder)
        kept.rename(folder)  # the test reads what the stage left on the full disk
        shutil.rmtree(saved)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def test_disk_full_where_the_model_goes_names_it_and_replaces_nothing(committed):
    retrain_params(committed)
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    with full_disk(committed.root / "models"):
        result, seconds = stage(committed, "train")
    line = one_error_line(result)
    print(f"{seconds:.1f} s: {line}")
    # The first file train writes there: its checkpoint (after eval_every steps), else the model.
    assert line.startswith(
        (
            "error: cannot write models/checkpoint.npz (in ",
            "error: cannot write models/model.keras (in ",
        )
    )
    assert "No space left on device; free some space there and rerun" in line
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    assert leftovers(committed.root) == []


def test_disk_full_where_the_plots_go_replaces_no_output_of_evaluate_or_visualize(committed):
    retrain_params(committed)
    assert (
        stage(committed, "train")[0].returncode == 0
    )  # a new model: evaluate and visualize have new results to write
    before = snapshot(committed.root, (*EVALUATE_OUTPUTS, "plots/visualize"))
    with full_disk(committed.root / "plots"):
        evaluated, evaluate_seconds = stage(committed, "evaluate")
        visualized, visualize_seconds = stage(committed, "visualize")
    for result, seconds in ((evaluated, evaluate_seconds), (visualized, visualize_seconds)):
        line = one_error_line(result)
        print(f"{seconds:.1f} s: {line}")
        assert "No space left on device; free some space there" in line
    assert one_error_line(evaluated).startswith("error: cannot write plots/")
    assert one_error_line(visualized).startswith("error: cannot write plots/visualize")
    assert snapshot(committed.root, (*EVALUATE_OUTPUTS, "plots/visualize")) == before
    assert leftovers(committed.root) == []


def test_disk_full_where_mlflow_keeps_artifacts_replaces_no_output(committed, store_template):
    track(committed, store_template)
    retrain_params(committed)
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    with full_disk(committed.root / "mlartifacts"):
        result, seconds = stage(committed, "train")
    line = one_error_line(result)
    print(f"{seconds:.1f} s: {line}")
    assert "MLflow's artifacts, file://" in line
    assert "No space left on device; free some space there and rerun" in line
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    assert leftovers(committed.root) == []


def test_a_swap_that_fails_ends_the_run_failed_and_replaces_nothing(committed, store_template):
    """The run ends after the swap: when a rename fails (no rename replaces a folder with a
    file, not even as root), the renames before it are undone and the run is not FINISHED."""
    track(committed, store_template)
    retrain_params(committed)
    history = committed.root / "plots" / "train_history.csv"
    history.unlink()
    history.mkdir()
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    result, seconds = stage(committed, "train")
    line = one_error_line(result)
    print(f"{seconds:.1f} s: {line}")
    assert line.startswith("error: cannot write plots/train_history.csv: ")
    assert line.endswith("no output of this stage was replaced")
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    assert history.is_dir()
    (run,) = store_runs(committed.root / "mlflow.db")
    assert run.info.status == "FAILED"
    assert leftovers(committed.root) == []


def test_mlflow_db_on_a_full_disk_is_one_line_naming_it_and_loses_no_run(
    committed, store_template
):
    import mlflow

    track(committed, store_template)
    store = committed.root / "store"
    store.mkdir()
    database = store / "mlflow.db"
    shutil.copy(store_template, database)
    client = mlflow.MlflowClient(f"sqlite:///{database}")
    earlier = client.create_run(client.create_experiment("earlier")).info.run_id
    committed.env = {**committed.env, "MLFLOW_TRACKING_URI": "sqlite:///store/mlflow.db"}
    before = snapshot(committed.root, TRAIN_OUTPUTS)
    with full_disk(store):
        result, seconds = stage(committed, "train")
    line = one_error_line(result)
    print(f"{seconds:.1f} s: {line}")
    assert line.startswith(f"error: cannot write {database}: ")
    assert "free some space on its disk and rerun" in line
    assert snapshot(committed.root, TRAIN_OUTPUTS) == before
    from digits.tracking.store_checks import check_database

    check_database(database)
    assert [run.info.run_id for run in store_runs(database)] == [earlier]
