import json
import shutil
from pathlib import Path

import pytest

from stages import tracking
from stages.errors import DataError, PipelineError, Terminated
from stages.params import TrackingParams, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_param_gets_its_dotted_name_and_yaml_spelling():
    params = load_params(REPO_ROOT / "params.yaml")
    flat = tracking.dotted_params(params, ("data", "train", "visualize", "tracking"))
    assert flat["train.fc_size"] == "128"
    assert flat["train.learning_rate"] == "0.0001"
    assert flat["visualize.images"] == "[0, 13]"
    assert flat["tracking.enabled"] == "true"
    assert flat["tracking.register_model"] == ""
    assert len(flat) == 3 + 15 + 2 + 3


def test_dotted_params_refuses_a_section_that_was_not_loaded():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",))
    with pytest.raises(ValueError, match="'evaluate' was not loaded"):
        tracking.dotted_params(params, ("evaluate",))


def test_metrics_are_the_top_level_numbers_of_a_metrics_file():
    metrics = {
        "accuracy": 0.5,
        "steps": 20,
        "per_class": {"T-shirt/top": {"f1-score": 0.25}},
        "dataset": "mnist",
        "flag": True,
    }
    assert tracking.top_level_metrics(metrics, "test/") == {
        "test/accuracy": 0.5,
        "test/steps": 20.0,
    }


def test_tags_name_the_commit_and_the_dvc_experiment():
    assert tracking.run_tags({"DVC_EXP_NAME": "quiet-oryx"}, "abc123") == {
        "mlflow.source.git.commit": "abc123",
        "dvc.experiment": "quiet-oryx",
    }
    assert tracking.run_tags({}, None) == {}


def test_an_experiment_commit_is_its_baseline(tmp_path):
    assert tracking.git_commit({"DVC_EXP_BASELINE_REV": "f00d"}, tmp_path) == "f00d"
    assert tracking.git_commit({}, tmp_path) is None  # not a git repository


def test_file_md5_is_the_dvc_cache_name(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello\n")
    assert tracking.file_md5(tmp_path / "a.bin") == "b1946ac92492d2347c6235b4d2611184"


def test_requirements_pin_the_installed_keras_and_tensorflow():
    pinned = tracking.pinned_requirements()
    names = [line.split("==")[0] for line in pinned]
    assert names[0] == "keras" and names[1].startswith("tensorflow")
    assert all("==" in line for line in pinned)


def test_run_file_holds_an_id_or_null(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "abc"}')
    assert tracking.read_run_file(path) == "abc"
    path.write_text('{"run_id": null}')
    assert tracking.read_run_file(path) is None
    for damaged in ("{", "[]", '{"id": 1}', '{"run_id": 3}'):
        path.write_text(damaged)
        with pytest.raises(DataError, match=r"run\.json"):
            tracking.read_run_file(path)
    with pytest.raises(DataError, match="dvc repro train"):
        tracking.read_run_file(tmp_path / "missing.json")


OFF = TrackingParams(enabled=False, experiment="digits", register_model="")
ON = TrackingParams(enabled=True, experiment="digits", register_model="")


def test_with_tracking_off_nothing_is_logged_and_the_run_file_says_null(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    with tracking.new_run(OFF, tmp_path / "run.json") as run:
        run.log_params(params, ("train",))
        run.log_step({"step": 1, "train_loss": 1, "train_accuracy": 0, "val_loss": 1,
                      "val_accuracy": 0})  # fmt: skip
        run.log_metrics({"a": 1}, "x/")
        run.log_files(tmp_path / "run.json")
    assert json.loads((tmp_path / "run.json").read_text()) == {"run_id": None}
    with tracking.model_run(OFF, tmp_path / "run.json") as run:
        assert run.run_id is None
    assert not list(tmp_path.glob("mlflow.db*")) and not (tmp_path / "mlartifacts").exists()


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
    with tracking.new_run(ON, workspace / "run.json") as run:
        pass
    return run.run_id


def client(workspace: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")


def test_a_run_ends_finished_and_its_id_is_recorded(workspace):
    run_id = finished_run(workspace)
    assert tracking.read_run_file(workspace / "run.json") == run_id
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
    with pytest.raises(error), tracking.new_run(ON, workspace / "run.json") as run:
        raise error("stop")
    assert not (workspace / "run.json").exists()
    assert client(workspace).get_run(run.run_id).info.status == status

    run_id = finished_run(workspace)
    with pytest.raises(error), tracking.model_run(ON, workspace / "run.json"):
        raise error("stop")
    assert client(workspace).get_run(run_id).info.status == status


def test_a_rerun_with_changed_params_keeps_the_first_value_and_tags_the_new_one(workspace):
    import dataclasses

    run_id = finished_run(workspace)
    params = load_params(REPO_ROOT / "params.yaml")
    changed = dataclasses.replace(
        params, evaluate=dataclasses.replace(params.evaluate, batch_size=7)
    )
    for loaded in (params, changed):
        with tracking.model_run(ON, workspace / "run.json") as run:
            run.log_params(loaded, ("evaluate",))
    data = client(workspace).get_run(run_id).data
    assert data.params["evaluate.batch_size"] == str(params.evaluate.batch_size)
    assert data.tags["rerun.evaluate.batch_size"] == "7"

    with tracking.model_run(ON, workspace / "run.json") as run:
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
    with tracking.model_run(ON, workspace / "run.json") as run:
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
    (workspace / "run.json").write_text('{"run_id": "0123456789abcdef"}')
    with (
        pytest.raises(PipelineError, match=r"not in sqlite:///.*MLFLOW_TRACKING_URI"),
        tracking.model_run(ON, workspace / "run.json"),
    ):
        pass
    (workspace / "run.json").write_text('{"run_id": null}')
    with (
        pytest.raises(PipelineError, match="trained with tracking off"),
        tracking.model_run(ON, workspace / "run.json"),
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
        tracking.model_run(ON, workspace / "run.json"),
    ):
        pass
