"""The logged model takes image files: digits-predict, in-process pyfunc and `make serve` agree."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from idxdata import tiny_split
from mlflow.types import DataType
from PIL import Image

from digits.model import training
from digits.params import load_params
from digits.params import replace as params_replace
from digits.serving.logged_model import fetch_checked
from digits.serving.model_format import IMAGE_COLUMN
from digits.serving.predict import run
from digits.serving.pyfunc import MAX_BATCH
from digits.serving.server import model_server
from digits.tracking.logger import Tracker

REPO_ROOT = Path(__file__).resolve().parents[1]


def small_params(**changes):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    small = {"conv1_filters": 4, "conv2_filters": 8, "fc_size": 16, "steps": 60,
             "eval_every": 60, "learning_rate": 1e-2, **changes}  # fmt: skip
    return params_replace(params, **small)


def log_model(store_template: Path, folder: Path, monkeypatch, dataset: str = "mnist"):
    """A small CNN, trained a little on band images, logged as the train stage logs it (run tag
    and model config ``dataset``) into a SQLite store in ``folder``; MLFLOW_TRACKING_URI names
    the store."""
    database = folder / "mlflow.db"
    shutil.copy(store_template, database)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    model = training.train(small_params(), tiny_split(300, seed=1), tiny_split(50, seed=2)).model
    experiment = mlflow.create_experiment("t", artifact_location=(folder / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        if dataset:
            mlflow.set_tag("dataset", dataset)
        example = tiny_split(1, seed=0).x
        uri = Tracker(run.info.run_id).log_model(model, example, name="tiny-cnn", dataset=dataset)
    return model, uri


@pytest.fixture
def mnist_model(tmp_path, store_template, monkeypatch):
    """(Keras model, logged model URI) of a model whose run says it is for MNIST."""
    return log_model(store_template, tmp_path, monkeypatch)


def image_files(folder: Path) -> list[Path]:
    """Ten band images as files a user could send: 28x28 PNGs, dark-on-light 200x200 PNGs and
    a JPEG, so that every step of the preparation is used."""
    folder.mkdir()
    pixels = np.round(tiny_split(10, seed=7).x[..., 0] * 255).astype(np.uint8)
    files = []
    for index, image in enumerate(pixels):
        if index % 3 == 0:
            files.append(folder / f"{index}.png")
            Image.fromarray(image).save(files[-1])
        elif index % 3 == 1:
            files.append(folder / f"{index}.png")
            Image.fromarray(255 - image).resize((200, 200)).save(files[-1])
        else:
            files.append(folder / f"{index}.jpg")
            Image.fromarray(255 - image).resize((120, 150)).save(files[-1], quality=90)
    return files


def post(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def as_base64(files: list[Path]) -> list[str]:
    return [base64.b64encode(path.read_bytes()).decode() for path in files]


def test_the_logged_signature_is_images_in_names_out(mnist_model):
    _, uri = mnist_model
    info = mlflow.models.get_model_info(uri)
    (column,) = info.signature.inputs.inputs
    assert (column.name, column.type) == (IMAGE_COLUMN, DataType.binary)
    assert info.signature.outputs.input_names() == ["class_index", "class_name", "probabilities"]
    assert info.flavors["python_function"]["config"] == {"dataset": "mnist"}


@pytest.mark.slow
def test_files_give_the_same_answers_through_predict_pyfunc_and_the_server(
    mnist_model, tmp_path, capsys
):
    model, uri = mnist_model
    files = image_files(tmp_path / "files")

    assert run([*map(str, files), "--model", uri, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    classes = [row["class_index"] for row in printed]
    probabilities = np.array([row["probabilities"] for row in printed])
    assert len(set(classes)) >= 3, f"the model tells few images apart: {classes}"
    assert [row["class_name"] for row in printed] == [str(k) for k in classes]

    # In process: MLflow's own loader and schema check, the files' bytes in a DataFrame.
    loaded = mlflow.pyfunc.load_model(uri)
    answer = loaded.predict(pd.DataFrame({IMAGE_COLUMN: [path.read_bytes() for path in files]}))
    assert list(answer["class_index"]) == classes
    assert list(answer["class_name"]) == [str(k) for k in classes]
    np.testing.assert_allclose(np.stack(answer["probabilities"]), probabilities, atol=1e-6)

    encoded = as_base64(files)
    with model_server(uri, tmp_path / "server.log") as base:
        for body in (
            {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[text] for text in encoded]}},
            {"dataframe_records": [{IMAGE_COLUMN: text} for text in encoded]},
            {"inputs": encoded},
            {"inputs": {IMAGE_COLUMN: encoded}},
        ):
            status, answer = post(base, body)
            assert status == 200, (next(iter(body)), answer)
            rows = answer["predictions"]
            assert [row["class_index"] for row in rows] == classes
            assert [row["class_name"] for row in rows] == [str(k) for k in classes]
            found = [row["probabilities"] for row in rows]
            np.testing.assert_allclose(found, probabilities, atol=1e-6)

        # A corrupt image in a batch of three: 400, naming it by its index and why.
        damaged = base64.b64encode(files[1].read_bytes()[:60]).decode()
        batch = [encoded[0], damaged, encoded[2]]
        split = {"columns": [IMAGE_COLUMN], "data": [[text] for text in batch]}
        status, answer = post(base, {"dataframe_split": split})
        assert status == 400, answer
        assert "image 1: damaged image" in answer["message"], answer["message"]
        status, answer = post(base, {"inputs": [encoded[0], encoded[2], "not base64!"]})
        assert status == 400 and "image 2: not base64" in answer["message"], answer

        # Tensors still get logits.
        status, answer = post(base, {"inputs": tiny_split(2, seed=3).x.tolist()})
        assert status == 200, answer
        np.testing.assert_allclose(
            answer["predictions"], model.predict_on_batch(tiny_split(2, seed=3).x), atol=1e-5
        )


def test_in_process_a_bad_image_is_named_and_too_many_are_refused(mnist_model, tmp_path):
    _, uri = mnist_model
    loaded = mlflow.pyfunc.load_model(uri)
    good = image_files(tmp_path / "files")[0].read_bytes()
    with pytest.raises(mlflow.exceptions.MlflowException, match="image 2: not a PNG or JPEG"):
        loaded.predict(pd.DataFrame({IMAGE_COLUMN: [good, good, b"GIF89a" + bytes(40)]}))
    with pytest.raises(mlflow.exceptions.MlflowException, match=f"at most {MAX_BATCH}"):
        loaded.predict(pd.DataFrame({IMAGE_COLUMN: [good] * (MAX_BATCH + 1)}))


def test_a_model_whose_run_names_no_dataset_says_so_for_images(
    tmp_path, store_template, monkeypatch
):
    _, uri = log_model(store_template, tmp_path, monkeypatch, dataset="")
    loaded = mlflow.pyfunc.load_model(uri)
    png = image_files(tmp_path / "files")[0].read_bytes()
    with pytest.raises(mlflow.exceptions.MlflowException, match="does not record its dataset"):
        loaded.predict(pd.DataFrame({IMAGE_COLUMN: [png]}))


def test_a_model_logged_from_a_uv_project_folder_is_served(tmp_path, store_template, monkeypatch):
    # The workspace holds uv.lock and pyproject.toml; MLflow copies such a folder's files into
    # a model, which predicting and serving then refuse as files a model does not hold.
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", workspace)
    shutil.copy(REPO_ROOT / "uv.lock", workspace)
    monkeypatch.chdir(workspace)
    _, uri = log_model(store_template, tmp_path, monkeypatch)
    checked = fetch_checked(uri, tmp_path / "fetched")
    assert checked.dataset == "mnist" and checked.keras_path.is_file()
