"""The logged pyfunc model, in process and behind a real `mlflow models serve`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from idxdata import tiny_split

from benchmarks.serving import JSON, PARQUET, json_body, parquet_body
from digits import serving
from digits.errors import PipelineError
from digits.serving import default_model_uri, model_server

REPO_ROOT = Path(__file__).resolve().parents[1]


def post(base: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/invocations", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_logged_model_is_named_and_predicts_the_keras_logits(logged_model):
    model, uri = logged_model
    info = mlflow.models.get_model_info(uri)
    assert info.name == "tiny-cnn"
    loaded = mlflow.pyfunc.load_model(uri)
    (spec,) = loaded.metadata.get_input_schema().inputs
    assert tuple(spec.shape) == (-1, 28, 28, 1) and spec.type == np.float32
    images = tiny_split(30, seed=1).x
    np.testing.assert_allclose(loaded.predict(images), model.predict_on_batch(images), atol=1e-5)


def test_make_serve_names_the_run_file_problem(tmp_path):
    with pytest.raises(PipelineError, match="not found: train first"):
        default_model_uri(tmp_path / "mlflow_run.json")
    (tmp_path / "mlflow_run.json").write_text('{"run_id": null}')
    with pytest.raises(PipelineError, match="names no logged model"):
        default_model_uri(tmp_path / "mlflow_run.json")


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_in_process_logits(logged_model, tmp_path):
    model, uri = logged_model
    images = tiny_split(40, seed=2).x
    expected = model.predict_on_batch(images)
    with model_server(uri, tmp_path / "server.log") as base:
        status, answer = post(base, json_body(images[:1]), JSON)
        assert status == 200, answer
        np.testing.assert_allclose(answer["predictions"], expected[:1], atol=1e-5)
        status, answer = post(base, parquet_body(images), PARQUET)
        assert status == 200, answer
        np.testing.assert_allclose(answer["predictions"], expected, atol=1e-5)

        # The logged signature refuses a wrong shape and a wrong dtype, with a message.
        status, answer = post(base, json_body(images[:2, :27]), JSON)
        assert 400 <= status < 500
        assert "Shape of input (2, 27, 28, 1) does not match expected shape" in answer["message"]
        status, answer = post(base, parquet_body(images.astype(np.float64)), PARQUET)
        assert 400 <= status < 500
        assert "dtype of input float64 does not match expected dtype float32" in answer["message"]
        status, answer = post(base, b'{"inputs": "seven"}', JSON)
        assert 400 <= status < 500 and answer["message"]


def planned_serve(*variables: str) -> list[str]:
    """The words of the command `make serve` would run (``make -n``), shell-split."""
    # make takes MODEL and PORT from the environment too (a CI runner may set PORT).
    env = {name: value for name, value in os.environ.items() if name not in ("MODEL", "PORT")}
    planned = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "-C", str(REPO_ROOT), "serve", *variables],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    (line,) = [line for line in planned.splitlines() if "digits.serving" in line]
    return shlex.split(line)


def exec_of_serving_main(argv: list[str], monkeypatch) -> tuple[list[str], dict[str, str]]:
    """The command and environment ``digits.serving.main`` hands to ``os.execve``."""
    calls = []
    monkeypatch.setattr(serving.os, "execve", lambda path, args, env: calls.append((args, env)))
    serving.main(argv)
    ((command, env),) = calls
    return command, env


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_make_serve_passes_model_and_port_to_a_local_server_on_loopback(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    model = str(tmp_path / "my models" / "model dir")
    words = planned_serve(f"MODEL={model}", "PORT=5123")
    assert words[0].endswith("/python") and words[1:3] == ["-m", "digits.serving"], words

    # What make passes is what the module then runs: `mlflow models serve` of this venv.
    command, env = exec_of_serving_main(words[3:], monkeypatch)
    assert command[0] == str(Path(sys.executable).with_name("mlflow"))
    assert command[1:3] == ["models", "serve"]
    assert option(command, "--model-uri") == model, "MODEL stays one argument"
    assert option(command, "--port") == "5123"
    assert option(command, "--host") == "127.0.0.1"
    # MLflow's default env manager builds a virtualenv, which needs the internet.
    assert option(command, "--env-manager") == "local"
    assert not [word for word in command if "virtualenv" in word or "conda" in word]
    # models:/ URIs resolve in the store the stages write, at the workspace root.
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_make_serve_without_model_serves_the_workspace_run(tmp_path, monkeypatch):
    run_file = tmp_path / "models" / "mlflow_run.json"
    run_file.parent.mkdir()
    run_file.write_text(json.dumps({"run_id": "abc", "model_uri": "models:/m-0123"}))
    words = planned_serve()
    assert "--model" not in words
    command, _ = exec_of_serving_main(words[3:], monkeypatch)
    assert option(command, "--model-uri") == "models:/m-0123"
    assert option(command, "--port") == "5002"


def serving_recipe() -> str:
    """The request line of the documented serving recipe (docs/using-the-model.md): the one
    that pipes the request to curl."""
    page = (REPO_ROOT / "docs" / "using-the-model.md").read_text()
    (line,) = [line for line in page.splitlines() if "| curl" in line and "/invocations" in line]
    return line.removeprefix("$ ")


def test_a_request_file_in_the_repository_root_is_ignored():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", "request.json"], cwd=REPO_ROOT
    )
    assert ignored.returncode == 0, "request.json in the repository root is not ignored"


@pytest.mark.slow
def test_the_documented_request_leaves_no_file_and_gets_predictions(logged_model, tmp_path):
    model, uri = logged_model
    workspace = tmp_path / "workspace"
    (workspace / "data" / "processed").mkdir(parents=True)
    images = tiny_split(3, seed=5).x
    np.savez(workspace / "data" / "processed" / "test.npz", x=images)
    with model_server(uri, tmp_path / "server.log") as base:
        command = serving_recipe().replace("http://127.0.0.1:5002", base)
        assert base in command
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        result = subprocess.run(
            ["bash", "-c", command], cwd=workspace, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    np.testing.assert_allclose(predictions, model.predict_on_batch(images[:2]), atol=1e-5)
    left = sorted(path.relative_to(workspace).as_posix() for path in workspace.rglob("*"))
    assert left == ["data", "data/processed", "data/processed/test.npz"]
