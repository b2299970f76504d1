"""End to end: a model registered by `dvc exp run` is promoted with its earlier run's figure."""

from __future__ import annotations

import pytest
from helpers.runstore import client as store_client
from helpers.runstore import enable_tracking, runs_of

from digits.tracking.stage_run import SAME_MODEL_TAG, read_run_file

pytestmark = pytest.mark.slow


def test_registering_on_unchanged_params_then_promoting_works(committed, store_template):
    """The first-hour path: train, then `dvc exp run -S tracking.register_model=...` on the
    same params retrains the same bytes (the run file keeps the earlier run), and version 1
    is promoted with the earlier run's test accuracy."""
    enable_tracking(committed, store_template)
    committed.run("dvc", "repro")
    first = read_run_file(committed.root / "models" / "mlflow_run.json")
    committed.run("dvc", "exp", "run", "-S", "tracking.register_model=digits-cnn")
    assert read_run_file(committed.root / "models" / "mlflow_run.json") == first
    registered = store_client(committed).get_model_version("digits-cnn", "1")
    assert registered.run_id != first
    (run,) = [run for run in runs_of(committed) if run.info.run_id == registered.run_id]
    assert "test/accuracy" not in run.data.metrics and run.data.tags[SAME_MODEL_TAG] == first

    promoted = committed.run("python", "-m", "digits.tracking.promote")
    assert "promoted: models:/digits-cnn@champion -> version 1" in promoted.stdout
    assert f"from run {first}" in promoted.stdout
