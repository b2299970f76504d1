"""End to end: what one tracked `dvc repro` logs, reruns into the same run, and the MLflow UI
showing it. Runs that fail, are killed or come from the DVC queue: test_tracking_runs.py."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ProjectCopy, make_project, make_tiny_mirror
from helpers.browser import chromium
from helpers.runstore import client, enable_tracking, runs_of
from ruamel.yaml import YAML

from digits.runtime.local_servers import free_port, running
from digits.tracking import run_values, stage_run

pytestmark = pytest.mark.slow

REGISTERED_NAME = "tiny-cnn"
# As `make ui` runs it: no background job runners (GenAI features), one web worker.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, store_template) -> ProjectCopy:
    """One tiny tracked `dvc repro`, model registration on; read by several tests."""
    folder = tmp_path_factory.mktemp("tracked")
    project = make_project(folder / "project", make_tiny_mirror(folder))
    enable_tracking(project, store_template, register_model=REGISTERED_NAME)
    # A sample of CPU and memory use every second (MLflow's default is 10 s, longer than the
    # tiny run's training).
    project.env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
    project.run("dvc", "repro")
    return project


def test_a_tiny_run_logs_params_metrics_tags_artifacts_and_a_loadable_model(tracked):
    import keras
    import mlflow

    (run,) = runs_of(tracked)
    store = client(tracked)
    assert run.info.status == "FINISHED"
    assert stage_run.read_run_file(tracked.root / "models" / "mlflow_run.json") == run.info.run_id

    raw = YAML(typ="safe", pure=True).load((tracked.root / "params.yaml").read_text())
    for section in ("data", "train", "evaluate", "visualize", "tracking"):
        for key, value in raw[section].items():
            assert run.data.params[f"{section}.{key}"] == run_values.format_param(value), key

    history = store.get_metric_history(run.info.run_id, "val_accuracy")
    assert [point.step for point in history] == [10, 20]
    logged_history = {point.step: point.value for point in history}
    csv_history = np.genfromtxt(
        tracked.root / "plots" / "train_history.csv", delimiter=",", names=True
    )
    for row in csv_history:
        assert logged_history[int(row["step"])] == pytest.approx(row["val_accuracy"], abs=1e-5)
    evaluation = json.loads((tracked.root / "metrics" / "eval.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(evaluation["accuracy"])
    assert run.data.metrics["test/loss"] == pytest.approx(evaluation["loss"])
    assert "train/parameters" in run.data.metrics

    head = tracked.run("git", "rev-parse", "HEAD").stdout.strip()
    processed = tracked.root / "data" / "processed"
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.data.tags["dataset"] == "tiny"
    for split in ("train", "validation", "test"):
        assert run.data.tags[f"dataset.{split}_md5"] == run_values.file_md5(
            processed / f"{split}.npz"
        )
    assert "dvc.experiment" not in run.data.tags  # `dvc repro` is not an experiment
    # CPU and memory use over the training run (MLflow's system metrics).
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics
    ), sorted(run.data.metrics)
    # The machine the model was trained on, as the train stage's run facts record it.
    machine = json.loads((tracked.root / "metrics" / "train_run.json").read_text())["machine"]
    for key, value in machine.items():
        assert run.data.tags[f"machine.{key}"] == str(value), key
    # The runs page's Dataset column: one MLflow dataset per split, digest = the file's MD5.
    datasets = {
        (entry.dataset.name, entry.dataset.digest, tag.value)
        for entry in run.inputs.dataset_inputs
        for tag in entry.tags
        if tag.key == "mlflow.data.context"
    }
    assert datasets == {
        (f"tiny-{split}", run_values.file_md5(processed / f"{split}.npz"), split)
        for split in ("train", "validation", "test")
    }

    artifacts = {item.path for item in store.list_artifacts(run.info.run_id)}
    artifacts |= {item.path for item in store.list_artifacts(run.info.run_id, "plots")}
    artifacts |= {item.path for item in store.list_artifacts(run.info.run_id, "metrics")}
    visualized = {
        item.path for item in store.list_artifacts(run.info.run_id, "plots/visualize/filters")
    }
    assert visualized == {
        f"plots/visualize/filters/{path.name}"
        for path in (tracked.root / "plots" / "visualize" / "filters").iterdir()
    }
    assert visualized, "the tiny CNN has filters to draw"
    artifacts |= {item.path for item in store.list_artifacts(run.info.run_id, "plots/visualize")}
    assert {
        "plots/visualize/predictions.png",
        "plots/visualize/model_summary.txt",
        "keras_summary.txt",
        "plots/train_history.csv",
        "plots/confusion.csv",
        "plots/confusion.png",
        "plots/errors.png",
        "metrics/train.json",
        "metrics/train_run.json",
        "metrics/eval.json",
    } <= artifacts
    assert run.info.artifact_uri.startswith((tracked.root / "mlartifacts").as_uri())

    # The model, loaded back through MLflow, predicts as the pipeline's own model does.
    mlflow.set_tracking_uri(f"sqlite:///{tracked.root / 'mlflow.db'}")
    image = np.load(processed / "test.npz")["x"][:1]  # (1, 28, 28, 1) float32
    # models/mlflow_run.json names the logged model, which says what it is.
    model_uri = json.loads((tracked.root / "models" / "mlflow_run.json").read_text())["model_uri"]
    assert mlflow.models.get_model_info(model_uri).name == "tiny-cnn"
    logged = mlflow.pyfunc.load_model(model_uri)
    (spec,) = logged.metadata.get_input_schema().inputs
    assert tuple(spec.shape) == (-1, 28, 28, 1)
    reference = keras.models.load_model(tracked.root / "models" / "model.keras")
    np.testing.assert_allclose(
        logged.predict(image), reference.predict(image, verbose=0), rtol=1e-5, atol=1e-6
    )
    (version,) = store.search_model_versions(f"name='{REGISTERED_NAME}'")
    assert version.run_id == run.info.run_id


def test_rerunning_only_evaluate_logs_into_the_same_run(tracked):
    (before,) = runs_of(tracked)
    tracked.set_params({"evaluate": {"batch_size": 7}})
    result = tracked.run("dvc", "repro")
    assert "Running stage 'evaluate'" in result.stdout
    assert "Running stage 'train'" not in result.stdout
    (after,) = runs_of(tracked)
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert after.data.params["evaluate.batch_size"] == before.data.params["evaluate.batch_size"]
    assert after.data.tags["rerun.evaluate.batch_size"] == "7"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def mlflow_ui(tracked, tmp_path) -> Iterator[str]:
    """`mlflow ui` on 127.0.0.1 and a free port, on the tracked project's store."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "ui",
        "--backend-store-uri", f"sqlite:///{tracked.root / 'mlflow.db'}",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    env = {**tracked.env, **UI_ENV}
    with running(command, f"{base}/health", tmp_path / "mlflow-ui.log", env, tracked.root):
        yield base


def test_the_mlflow_ui_serves_the_run_its_metrics_and_its_plots(tracked, mlflow_ui):
    (run,) = runs_of(tracked)
    run_id = run.info.run_id
    api = f"{mlflow_ui}/api/2.0/mlflow"

    served = get_json(f"{api}/runs/get?run_id={run_id}")["run"]
    assert served["info"]["run_name"] == run.info.run_name
    assert served["info"]["status"] == "FINISHED"
    history = get_json(f"{api}/metrics/get-history?run_id={run_id}&metric_key=val_accuracy")
    assert [point["step"] for point in history["metrics"]] == [10, 20]
    metrics = {metric["key"]: metric["value"] for metric in served["data"]["metrics"]}
    assert metrics["test/accuracy"] == pytest.approx(run.data.metrics["test/accuracy"])
    query = urllib.parse.urlencode({"path": "plots/confusion.png", "run_uuid": run_id})
    with urllib.request.urlopen(f"{mlflow_ui}/get-artifact?{query}", timeout=30) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"

    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(f"{mlflow_ui}/#/experiments/{run.info.experiment_id}/runs")
        WebDriverWait(driver, 90).until(lambda page: run.info.run_name in page.page_source)
        assert "digits" in driver.page_source
