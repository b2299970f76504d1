"""A small model logged as the train stage logs it, and image files a user could send it."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image

from digits.model import training
from digits.params import load_params
from digits.params import replace as params_replace
from digits.tracking.logger import Tracker
from helpers.idxdata import tiny_split
from helpers.paths import REPO_ROOT


def small_params(**changes):
    """The train section of params.yaml with a small CNN that learns band images quickly."""
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    small = {"conv1_filters": 4, "conv2_filters": 8, "fc_size": 16, "steps": 60,
             "eval_every": 60, "learning_rate": 1e-2, **changes}  # fmt: skip
    return params_replace(params, **small)


def log_model(store_template: Path, folder: Path, monkeypatch, dataset: str = "mnist"):
    """A small CNN, trained a little on band images, logged as the train stage logs it (run tag
    and model config ``dataset``) into a SQLite store in ``folder``; MLFLOW_TRACKING_URI names
    the store. Returns (Keras model, logged model URI)."""
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


def image_files(folder: Path) -> list[Path]:
    """Ten band images as files a user could send: 28x28 PNGs, dark-on-light 200x200 PNGs and
    JPEGs, so that every step of the preparation is used."""
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


def as_base64(files: list[Path]) -> list[str]:
    """Each file's bytes as base64 text, as a JSON request carries them."""
    return [base64.b64encode(path.read_bytes()).decode() for path in files]
