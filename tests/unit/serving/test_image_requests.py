"""The logged model in process: image files in, class names out, bad images named."""

from __future__ import annotations

import shutil

import mlflow
import pandas as pd
import pytest
from helpers.paths import REPO_ROOT
from helpers.served_images import image_files, log_model
from mlflow.types import DataType

from digits.serving.logged_model import fetch_checked
from digits.serving.model_format import IMAGE_COLUMN
from digits.serving.pyfunc import MAX_BATCH


@pytest.fixture
def mnist_model(tmp_path, store_template, monkeypatch):
    """(Keras model, logged model URI) of a model logged for MNIST."""
    return log_model(store_template, tmp_path, monkeypatch)


def test_the_logged_signature_is_images_in_names_out(mnist_model):
    _, uri = mnist_model
    info = mlflow.models.get_model_info(uri)
    (column,) = info.signature.inputs.inputs
    assert (column.name, column.type) == (IMAGE_COLUMN, DataType.binary)
    assert info.signature.outputs.input_names() == ["class_index", "class_name", "probabilities"]
    assert info.flavors["python_function"]["config"] == {"dataset": "mnist"}


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
