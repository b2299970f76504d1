"""The logged pyfunc model, in process and behind the real server of `make serve`."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers.idxdata import tiny_split
from helpers.makeruns import make_calls
from helpers.paths import REPO_ROOT

from benchmarks.serving import JSON, PARQUET, json_body, parquet_body
from digits.errors import PipelineError
from digits.runtime.local_servers import free_port, running
from digits.serving import server
from digits.serving.app import MAX_BODY_BYTES
from digits.serving.pyfunc import MAX_BATCH
from digits.serving.server import default_model_uri, model_server


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


def planned_serve(folder: Path, *variables: str) -> list[str]:
    """The arguments `make serve` hands the module, as the process receives them."""
    calls = [call for call in make_calls("serve", list(variables), folder) if "-m" in call]
    ((program, *words),) = calls
    assert program.endswith("/python"), program
    return words


def exec_of_serving_main(argv: list[str], monkeypatch) -> tuple[list[str], dict[str, str]]:
    """The command and environment ``digits.serving.server.main`` hands to ``os.execve``."""
    calls = []
    monkeypatch.setattr(server.os, "execve", lambda path, args, env: calls.append((args, env)))
    server.main(argv)
    ((command, env),) = calls
    return command, env


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_make_serve_passes_model_and_port_to_a_local_server_on_loopback(
    logged_model, tmp_path, monkeypatch
):
    _, uri = logged_model
    # The logged model's store is tmp_path/mlflow.db, the workspace's store of tmp_path.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    model = str(tmp_path / "my models" / "model dir")
    words = planned_serve(tmp_path / "spaces", f"MODEL={model}", "PORT=5123")
    assert words[:2] == ["-m", "digits.serving.server"], words
    assert option(words, "--model") == model, "MODEL stays one argument"

    # What make passes is what the module then serves: uvicorn of this venv on loopback.
    words = planned_serve(tmp_path / "uri", f"MODEL={uri}", "PORT=5123")
    command, env = exec_of_serving_main(words[2:], monkeypatch)
    assert command[0] == str(Path(sys.executable).with_name("uvicorn"))
    assert option(command, "--factory") == server.APP_FACTORY
    assert env[server.MODEL_VARIABLE] == uri
    assert option(command, "--port") == "5123"
    assert option(command, "--host") == "127.0.0.1"
    assert option(command, "--workers") == "1"
    # No environment is built for the model (that would need the internet).
    assert not [word for word in command if "virtualenv" in word or "conda" in word]
    # models:/ URIs resolve in the store the stages write, at the workspace root.
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_make_serve_without_model_serves_the_workspace_run(logged_model, tmp_path, monkeypatch):
    _, uri = logged_model
    run_id = mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/")).source_run_id
    run_file = tmp_path / "models" / "mlflow_run.json"
    run_file.parent.mkdir()
    run_file.write_text(json.dumps({"run_id": run_id, "model_uri": uri}))
    words = planned_serve(tmp_path / "default")
    assert "--model" not in words
    command, env = exec_of_serving_main(words[2:], monkeypatch)
    assert env[server.MODEL_VARIABLE] == uri
    assert env[server.RUN_VARIABLE] == run_id, "the server checks the model is that run's"
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


def sent_raw(base: str, headers: str, body_parts: list[bytes]) -> tuple[int, dict]:
    """POST ``headers`` and ``body_parts`` over a plain socket, then read the answer.

    The parts sent are all the server needs to decide: a server that answers before reading
    what it was sent resets the connection, and the answer could be lost with it.
    """
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        request = f"POST /invocations HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
        connection.sendall(request.encode())
        for part in body_parts:
            connection.sendall(part)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked HTTP body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.slow
def test_the_server_caps_the_request_body_and_the_batch(logged_model, tmp_path):
    model, uri = logged_model
    images = tiny_split(2, seed=4).x
    with model_server(uri, tmp_path / "server.log") as base:
        # A body over the cap is refused from its Content-Length, before any of it is sent.
        headers = f"Content-Type: {JSON}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n"
        status, answer = sent_raw(base, headers, [])
        assert status == 413 and f"over {MAX_BODY_BYTES} bytes" in answer["message"]
        # Sent in chunks without a length, it is refused once it passes the cap.
        headers = f"Content-Type: {JSON}\r\nTransfer-Encoding: chunked\r\n"
        megabyte = chunk(b" " * (1 << 20))
        parts = [megabyte] * (MAX_BODY_BYTES >> 20) + [chunk(b" ")]  # the cap, and a byte
        status, answer = sent_raw(base, headers, parts)
        assert status == 413 and f"over {MAX_BODY_BYTES} bytes" in answer["message"]
        # One image over the batch cap (Parquet: well under the body cap).
        batch = np.repeat(images[:1], MAX_BATCH + 1, axis=0)
        status, answer = post(base, parquet_body(batch), PARQUET)
        assert status == 400, answer
        assert f"{MAX_BATCH + 1} images in one request; at most {MAX_BATCH}" in answer["message"]
        # At the caps, and after the refusals, the server answers.
        status, answer = post(base, parquet_body(batch[:MAX_BATCH]), PARQUET)
        assert status == 200 and len(answer["predictions"]) == MAX_BATCH
        status, answer = post(base, json_body(images), JSON)
        assert status == 200, answer
        np.testing.assert_allclose(
            answer["predictions"], model.predict_on_batch(images), atol=1e-5
        )


@pytest.mark.slow
def test_make_serve_shows_no_tensorflow_notices_or_progress_bars(logged_model, tmp_path):
    _, uri = logged_model
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        env.pop(name, None)  # the defaults a user has
    command = [sys.executable, "-m", "digits.serving.server", "--model", uri, "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/ping", log, env, cwd=tmp_path, timeout=240):
        pass
    text = log.read_text()
    assert f"serving {uri} on http://127.0.0.1:{port}" in text
    assert "absl::InitializeLog" not in text, text
    assert not re.search(r"^I\d{4} ", text, re.MULTILINE), text
    assert "Downloading artifacts" not in text, text
