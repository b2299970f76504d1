"""A logged model from the store: only its checked .keras file is loaded; nothing else runs.

Each test alters a logged model as someone who can write the artifact store could, with code
that writes a marker file if it ever runs, and checks that predicting and serving refuse the
model in one line naming it, and that the marker was never written.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import yaml
from helpers.paths import REPO_ROOT
from PIL import Image

from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace
from digits.serving.logged_model import KERAS_SHA256_TAG
from digits.serving.predict import run
from digits.serving.pyfunc import sha256_of


class Payload:
    """A pickle that runs ``code`` when it is loaded."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def writes(marker: Path) -> str:
    """Python that writes ``marker``."""
    return f"open({str(marker)!r}, 'w').write('ran')\n"


def model_folder(uri: str) -> Path:
    """The local folder of the logged model ``models:/m-...`` (a file: artifact store)."""
    location = mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/"))
    return Path(urllib.parse.urlparse(location.artifact_location).path)


def edit_mlmodel(folder: Path, **flavor) -> None:
    """Set keys of the python_function flavour of ``folder``'s MLmodel."""
    description = yaml.safe_load((folder / "MLmodel").read_text())
    description["flavors"]["python_function"].update(flavor)
    (folder / "MLmodel").write_text(yaml.safe_dump(description))


def digit_png(path: Path) -> Path:
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    Image.fromarray(image).save(path)
    return path


def predict_errors(uri: str, tmp_path: Path) -> tuple[int, list[str], str]:
    """digits-predict on one image with model ``uri``: exit code, stderr lines, stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "digits.serving.predict", str(digit_png(tmp_path / "digit.png")),
         "--model", uri, "--dataset", "mnist"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment(),
    )  # fmt: skip
    return result.returncode, result.stderr.splitlines(), result.stdout


def environment() -> dict[str, str]:
    """This process's environment (MLFLOW_TRACKING_URI names the store), this checkout first."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def serve_errors(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m digits.serving.server` (what `make serve` runs); refused models exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "digits.serving.server", "--port", "1", *argv],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=environment(),
    )  # fmt: skip


def assert_refused(code: int, lines: list[str], uri: str, why: str) -> None:
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: model {uri}: "), lines
    assert why in lines[0], lines


def test_an_untouched_model_predicts_and_its_digest_is_the_runs(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    assert {"MLmodel", "data"} <= {path.name for path in folder.iterdir()}
    assert not (folder / "python_model.pkl").exists() and not (folder / "code").exists()
    logged = mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/"))
    tags = mlflow.MlflowClient().get_run(logged.source_run_id).data.tags
    assert tags[KERAS_SHA256_TAG] == sha256_of(folder / "data" / "model.keras")
    code, lines, out = predict_errors(uri, tmp_path)
    assert code == 0 and not lines, lines
    assert out.startswith(f"{tmp_path / 'digit.png'}: ")


def test_a_model_logged_under_the_former_loader_name_still_predicts(logged_model, tmp_path):
    _, uri = logged_model
    edit_mlmodel(model_folder(uri), loader_module="digits.pyfunc")
    code, lines, out = predict_errors(uri, tmp_path)
    assert code == 0 and not lines, lines
    assert out.startswith(f"{tmp_path / 'digit.png'}: ")


def test_a_model_naming_another_loader_is_refused(logged_model, tmp_path):
    _, uri = logged_model
    edit_mlmodel(model_folder(uri), loader_module="digits.elsewhere")
    code, lines, _ = predict_errors(uri, tmp_path)
    assert_refused(code, lines, uri, "does not describe a model of this project")


def test_a_tampered_bundled_module_is_refused_and_never_imported(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    marker = tmp_path / "module-ran"
    (folder / "code" / "digits").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "digits" / "__init__.py").write_text(writes(marker))
    (folder / "code" / "digits" / "pyfunc.py").write_text(writes(marker))
    edit_mlmodel(folder, code="code")
    code, lines, _ = predict_errors(uri, tmp_path)
    assert not marker.exists(), "the bundled module ran"
    assert_refused(code, lines, uri, "code")


def test_a_replaced_pickle_is_refused_and_never_unpickled(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    marker = tmp_path / "pickle-ran"
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Payload(writes(marker))))
    edit_mlmodel(folder, loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    code, lines, _ = predict_errors(uri, tmp_path)
    assert not marker.exists(), "the pickle ran"
    assert_refused(code, lines, uri, "python_model.pkl")
    # The MLmodel alone pointed at a loader of MLflow's is refused too.
    (folder / "python_model.pkl").unlink()
    code, lines, _ = predict_errors(uri, tmp_path)
    assert_refused(code, lines, uri, "mlflow.pyfunc.model")
    assert not marker.exists()


def test_a_swapped_keras_file_is_refused_by_its_digest(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    other = build_model(params_replace(params, conv1_filters=4, conv2_filters=8, fc_size=16,
                                       seed=params.seed + 1))  # fmt: skip
    other.save(folder / "data" / "model.keras")
    code, lines, _ = predict_errors(uri, tmp_path)
    assert_refused(code, lines, uri, "SHA-256 differs")


def test_a_model_uri_of_another_form_is_refused(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    # A place rather than a model of a run: nothing to check it against.
    for foreign in (folder.as_uri(), f"models:/{uri.removeprefix('models:/')}/../x"):
        code, lines, _ = predict_errors(foreign, tmp_path)
        assert_refused(code, lines, foreign, "not a URI predicting and serving accept")


def test_make_serve_refuses_a_foreign_model_uri_in_the_run_file(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    run_id = mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/")).source_run_id
    run_file = tmp_path / "models" / "mlflow_run.json"
    run_file.parent.mkdir()
    other_run = "0" * 32
    for foreign in ("file:///anywhere", folder.as_uri(), f"runs:/{other_run}/tiny-cnn",
                    "../../x"):  # fmt: skip
        run_file.write_text(json.dumps({"run_id": run_id, "model_uri": foreign}))
        result = serve_errors([], tmp_path)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and f"model_uri {foreign!r} is not a model of run" in lines[0]
    # A model of another run, named by its id, is refused when the store is asked.
    run_file.write_text(json.dumps({"run_id": other_run, "model_uri": uri}))
    result = serve_errors([], tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: model {uri}: it was logged by run {run_id}, not {other_run}")


def test_make_serve_refuses_a_tampered_model_before_starting(logged_model, tmp_path):
    _, uri = logged_model
    folder = model_folder(uri)
    marker = tmp_path / "pickle-ran"
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Payload(writes(marker))))
    edit_mlmodel(folder, loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    result = serve_errors(["--model", uri], tmp_path)
    assert not marker.exists(), "the pickle ran"
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: model {uri}: it holds files") and "python_model.pkl" in line
    assert not marker.exists()


def test_only_keras_files_load(tmp_path, capsys):
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n")
    code = run([str(digit_png(tmp_path / "digit.png")), "--model", str(legacy),
                "--dataset", "mnist"])  # fmt: skip
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        code == 1
        and line == f"error: {legacy} is not a .keras file; only .keras models are loaded"
    )


def test_make_serve_refuses_a_model_with_a_bundled_module(logged_model, tmp_path):
    # A server imports a model's code before its own: there the module would run.
    _, uri = logged_model
    folder = model_folder(uri)
    marker = tmp_path / "module-ran"
    (folder / "code" / "digits").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "digits" / "__init__.py").write_text(writes(marker))
    edit_mlmodel(folder, code="code")
    result = serve_errors(["--model", uri], tmp_path)
    assert not marker.exists(), "the bundled module ran"
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: model {uri}: it holds files") and "code" in line
