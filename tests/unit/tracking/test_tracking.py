import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT

from digits.errors import DataError, PipelineError, Terminated
from digits.params import TrackingParams, load_params
from digits.runtime.atomic import Outputs
from digits.tracking import stage_run
from digits.tracking.logger import NullTracker, Tracker
from digits.tracking.mlflow_store import StoreError


def test_run_file_holds_an_id_or_null(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "0123456789abcdef0123456789abcdef"}')
    assert stage_run.read_run_file(path) == "0123456789abcdef0123456789abcdef"
    path.write_text('{"run_id": null}')
    assert stage_run.read_run_file(path) is None
    for damaged in ("{", "[]", '{"id": 1}', '{"run_id": 3}'):
        path.write_text(damaged)
        with pytest.raises(DataError, match=r"run\.json"):
            stage_run.read_run_file(path)
    with pytest.raises(DataError, match="dvc repro train"):
        stage_run.read_run_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "run_id",
    ["../../../../etc/passwd", "x' OR '1'='1", "0123456789ABCDEF0123456789ABCDEF",
     "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef\n", ""],
)  # fmt: skip
def test_a_tampered_run_id_is_refused_naming_the_file(tmp_path, run_id):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run_id": run_id}))
    with pytest.raises(DataError, match=r"run\.json: run_id .* is not an MLflow run id"):
        stage_run.read_run_file(path)


OFF = TrackingParams(enabled=False, experiment="digits", register_model="")
ON = TrackingParams(enabled=True, experiment="digits", register_model="")


def test_with_tracking_off_nothing_is_logged_and_the_run_file_says_null(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    with Outputs() as outputs, stage_run.new_run(OFF, tmp_path / "run.json", outputs) as run:
        run.log_params(params, ("train",))
        run.log_step(1, {"train_loss": 1.0, "val_accuracy": 0.0})
        run.log_metrics({"a": 1}, "x/")
        run.log_files(tmp_path / "run.json")
        run.set_tags({"machine.cpu": "x"})
        run.log_missing_steps([(1, {"train_loss": 1.0})])
        run.log_data({"train": tmp_path / "missing.npz"}, dataset="mnist")
        assert run.log_model(model=None, example=None) is None
        assert str(run) == "MLflow tracking is off (tracking.enabled: false)"
    assert json.loads((tmp_path / "run.json").read_text()) == {"run_id": None}
    with stage_run.model_run(OFF, tmp_path / "run.json") as run:
        assert run.run_id is None
    assert not list(tmp_path.glob("mlflow.db*")) and not (tmp_path / "mlartifacts").exists()


def test_the_tracker_of_tracking_off_overrides_every_logging_call():
    """A call NullTracker inherited would run Tracker's, which logs into a run that is None."""
    public = {name for name in vars(Tracker) if not name.startswith("_")}
    assert public <= set(vars(NullTracker)), public - set(vars(NullTracker))


@pytest.fixture
def workspace(tmp_path, monkeypatch, store_template) -> Path:
    """An empty workspace with its own store; the stage code runs from its root."""
    shutil.copy(store_template, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        # set, then delete: undone in reverse, so a variable that MLflow sets during the test
        # (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI) is restored afterwards.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return tmp_path


def finished_run(workspace: Path) -> str:
    with Outputs() as outputs, stage_run.new_run(ON, workspace / "run.json", outputs) as run:
        pass
    return run.run_id


def client(workspace: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")


def test_a_run_ends_finished_and_its_id_is_recorded(workspace):
    run_id = finished_run(workspace)
    assert stage_run.read_run_file(workspace / "run.json") == run_id
    run = client(workspace).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(f"file://{workspace}/mlartifacts/")
    experiment = client(workspace).get_experiment(run.info.experiment_id)
    assert experiment.name == "digits"


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError, "FAILED"), (PipelineError, "FAILED"), (KeyboardInterrupt, "KILLED"),
     (Terminated, "KILLED")],
)  # fmt: skip
def test_a_failing_or_interrupted_stage_ends_its_run_failed_or_killed(workspace, error, status):
    with (
        pytest.raises(error),
        Outputs() as outputs,
        stage_run.new_run(ON, workspace / "run.json", outputs) as run,
    ):
        raise error("stop")
    assert not (workspace / "run.json").exists()
    assert client(workspace).get_run(run.run_id).info.status == status

    run_id = finished_run(workspace)
    with pytest.raises(error), stage_run.model_run(ON, workspace / "run.json"):
        raise error("stop")
    assert client(workspace).get_run(run_id).info.status == status


def test_a_stop_while_the_run_ends_waits_until_it_is_finished(workspace, monkeypatch):
    """A SIGTERM that lands as the run is being ended, once the outputs are in place, is
    acted on after the store write: the run ends FINISHED, then the stage stops."""
    import mlflow

    real_end_run = mlflow.end_run

    def end_run_with_a_stop_on_the_way(status="FINISHED"):
        os.kill(os.getpid(), signal.SIGTERM)
        real_end_run(status)

    def raise_terminated(signum, frame):
        raise Terminated(signum)

    monkeypatch.setattr(mlflow, "end_run", end_run_with_a_stop_on_the_way)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(Terminated):
            finished_run(workspace)
    finally:
        signal.signal(signal.SIGTERM, previous)
        while mlflow.active_run() is not None:
            real_end_run("FAILED")
    run_id = stage_run.read_run_file(workspace / "run.json")
    assert client(workspace).get_run(run_id).info.status == "FINISHED"


def test_a_rerun_with_changed_params_keeps_the_first_value_and_tags_the_new_one(workspace):
    from digits.params import replace

    run_id = finished_run(workspace)
    params = load_params(REPO_ROOT / "params.yaml")
    changed = params.model_copy(update={"evaluate": replace(params.evaluate, batch_size=7)})
    for loaded in (params, changed):
        with stage_run.model_run(ON, workspace / "run.json") as run:
            run.log_params(loaded, ("evaluate",))
    data = client(workspace).get_run(run_id).data
    assert data.params["evaluate.batch_size"] == str(params.evaluate.batch_size)
    assert data.tags["rerun.evaluate.batch_size"] == "7"

    with stage_run.model_run(ON, workspace / "run.json") as run:
        run.log_params(params, ("evaluate",))
    assert "rerun.evaluate.batch_size" not in client(workspace).get_run(run_id).data.tags


def test_files_keep_their_folder_in_the_run(workspace):
    (workspace / "plots" / "layers").mkdir(parents=True)
    (workspace / "plots" / "confusion.csv").write_text("actual,predicted\n")
    (workspace / "plots" / "layers" / "conv1.png").write_bytes(b"png")
    (workspace / "summary.txt").write_text("top level")
    outside = workspace.parent / f"{workspace.name}-outside.txt"
    outside.write_text("elsewhere")
    finished_run(workspace)
    with stage_run.model_run(ON, workspace / "run.json") as run:
        run.log_files(
            Path("plots/confusion.csv"), workspace / "plots" / "layers", "summary.txt", outside
        )
    top = {item.path for item in client(workspace).list_artifacts(run.run_id)}
    assert top == {"plots", "summary.txt", outside.name}
    listed = {item.path for item in client(workspace).list_artifacts(run.run_id, "plots")}
    assert listed == {"plots/confusion.csv", "plots/layers"}
    nested = client(workspace).list_artifacts(run.run_id, "plots/layers")
    assert [item.path for item in nested] == ["plots/layers/conv1.png"]


def test_a_run_missing_from_the_store_is_an_error_that_says_what_to_do(workspace):
    (workspace / "run.json").write_text('{"run_id": "0123456789abcdef0123456789abcdef"}')
    with (
        pytest.raises(PipelineError, match=r"not in sqlite:///.*MLFLOW_TRACKING_URI"),
        stage_run.model_run(ON, workspace / "run.json"),
    ):
        pass
    (workspace / "run.json").write_text('{"run_id": null}')
    with (
        pytest.raises(PipelineError, match="trained with tracking off"),
        stage_run.model_run(ON, workspace / "run.json"),
    ):
        pass


def test_a_deleted_experiment_is_an_error_naming_the_fix(workspace):
    finished_run(workspace)
    store = client(workspace)
    store.delete_experiment(store.get_experiment_by_name("digits").experiment_id)
    with pytest.raises(PipelineError, match=r"is deleted.*mlflow experiments restore"):
        finished_run(workspace)


def test_a_deleted_run_is_an_error_naming_the_fix(workspace):
    run_id = finished_run(workspace)
    client(workspace).delete_run(run_id)
    with (
        pytest.raises(PipelineError, match=r"is deleted.*mlflow runs restore"),
        stage_run.model_run(ON, workspace / "run.json"),
    ):
        pass


def test_after_the_workspace_moves_a_stage_refuses_and_logs_nothing(workspace, monkeypatch):
    """The store records absolute locations, which MLflow cannot change: a moved workspace
    must not log into (and re-create) its old folder; its stage stops with what to do."""
    finished_run(workspace)
    moved = workspace.parent / f"{workspace.name}-moved"
    workspace.rename(moved)
    monkeypatch.chdir(moved)
    monkeypatch.setenv("DVC_ROOT", str(moved))
    # A new stage is a new process: it has not inherited the URI MLflow exported for the old one.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (moved / "metrics.json").write_text("{}")

    with (
        pytest.raises(StoreError, match=re.escape(f"Move the workspace back to {workspace}")),
        stage_run.model_run(ON, moved / "run.json") as run,
    ):
        run.log_files("metrics.json")

    assert not workspace.exists(), "the old workspace folder was re-created"
    assert not list(moved.glob("mlartifacts/**/metrics.json")), "a file was logged"
