"""Predict the class of image files with a trained model.

    digits-predict my-digit.png photos/                      # models/model.keras
    digits-predict --model models:/digits-cnn@champion --json my-digit.png

One line per file: the file, the predicted class name and its probability; ``--json`` prints
one JSON object per file instead. A file that cannot be read gets one ``error:`` line naming
it and why; the others are still predicted, and the exit code is 1 if any failed.
Images are brought to the training format as ``digits.serving.images`` describes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.errors import PipelineError

DEFAULT_MODEL = "models/model.keras"
BATCH_SIZE = 256
# The catalog of the checkout this package lives in, when the working folder has none.
PROJECT_CATALOG = Path(__file__).resolve().parents[2] / "datasets.yaml"
# A URI MLflow resolves (runs:/, models:/, file:, s3:, ...) rather than a local .keras path.
MLFLOW_SCHEMES = ("runs:/", "models:/", "file:", "s3:", "gs:", "http:", "https:", "mlflow-")


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one file."""

    file: str
    class_index: int
    class_name: str
    probability: float
    probabilities: list[float]


def softmax(logits: np.ndarray) -> np.ndarray:
    """(n, 10) logits -> (n, 10) probabilities, in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def is_mlflow_uri(model: str) -> bool:
    """Whether ``model`` names an MLflow model rather than a local ``.keras`` file."""
    return model.startswith(MLFLOW_SCHEMES)


def load_predictor(model: str) -> tuple[Callable[[np.ndarray], np.ndarray], str | None]:
    """A function (n, 28, 28, 1) float32 -> (n, 10) logits, and the model's dataset if known.

    ``model`` is a ``.keras`` file or an MLflow model URI; MLflow URIs resolve against the
    store the stages write (``MLFLOW_TRACKING_URI``, else the workspace's ``mlflow.db``). Of a
    logged model only its ``.keras`` file is loaded, once checked against its run
    (``digits.serving.logged_model``); either way Keras loads it in safe mode.

    Raises:
        PipelineError: The file or the MLflow model is not there, or not a model this
            project logged, unchanged.
    """
    from digits.errors import DataError
    from digits.model.networks import load_model, predict_logits
    from digits.serving.pyfunc import ModelFileError, check_keras_file

    if not is_mlflow_uri(model):
        try:
            keras_model = load_model(check_keras_file(model))
        except ModelFileError as error:
            raise PipelineError(str(error)) from None
        return (lambda images: predict_logits(keras_model, images, BATCH_SIZE)), None
    import mlflow

    from digits.serving.logged_model import fetch_checked
    from digits.tracking.mlflow_store import resolve_store

    mlflow.set_tracking_uri(resolve_store(os.environ, Path.cwd()).tracking_uri)
    with tempfile.TemporaryDirectory(prefix="digits-model-") as folder:
        checked = fetch_checked(model, folder)
        try:
            keras_model = load_model(check_keras_file(checked.keras_path, checked.sha256))
        except (ModelFileError, DataError) as error:
            raise PipelineError(f"model {model}: {error}") from None
    return (lambda images: predict_logits(keras_model, images, BATCH_SIZE)), checked.dataset


def class_names_for(dataset: str | None, params: Path) -> tuple[str, tuple[str, ...]]:
    """The dataset's name and class names: ``dataset``, else ``data.dataset`` of ``params``.

    Class names come from ``datasets.yaml`` in the working folder, else the project's.

    Raises:
        PipelineError: Neither is known, or the dataset is not in datasets.yaml.
    """
    from digits.data.catalog import DEFAULT_CATALOG, load_dataset
    from digits.params import load_params

    if dataset is None:
        if not params.is_file():
            raise PipelineError(
                f"which dataset is the model for? {params} not found; pass --dataset"
            )
        dataset = load_params(params, sections=("data",)).data.dataset
    catalog = DEFAULT_CATALOG if DEFAULT_CATALOG.is_file() else PROJECT_CATALOG
    return dataset, load_dataset(dataset, catalog).class_names


def predict_files(
    files: list[Path],
    predict: Callable[[np.ndarray], np.ndarray],
    class_names: tuple[str, ...],
    style: str,
) -> tuple[list[Prediction], list[tuple[Path, str]]]:
    """Predictions for the files that could be read, and (file, reason) for the others."""
    from digits.serving.images import ImageError, prepare_image

    inputs, readable, failed = [], [], []
    for path in files:
        try:
            inputs.append(prepare_image(path, style))
            readable.append(path)
        except ImageError as error:
            failed.append((path, str(error)))
    if not inputs:
        return [], failed
    probabilities = softmax(predict(np.stack(inputs)[..., np.newaxis]))
    predictions = [
        Prediction(
            str(path),
            int(row.argmax()),
            class_names[int(row.argmax())],
            float(row.max()),
            [float(p) for p in row],
        )
        for path, row in zip(readable, probabilities, strict=True)
    ]
    return predictions, failed


def run(argv: list[str] | None = None) -> int:
    """Parse arguments, predict, print; return the exit code (1 if any file failed)."""
    parser = argparse.ArgumentParser(prog="digits-predict", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="image files (PNG, JPEG) or folders of them")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a .keras file or an MLflow model URI (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--dataset",
        help="the dataset whose class names to print (default: the model's run tag "
        "`dataset`, else data.dataset of --params)",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    from digits.serving.images import image_files

    files = image_files(args.paths)
    try:
        predict, model_dataset = load_predictor(args.model)
        dataset, class_names = class_names_for(args.dataset or model_dataset, args.params)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    style = "garments" if dataset == "fashion-mnist" else "digits"
    predictions, failed = predict_files(files, predict, class_names, style)
    for prediction in predictions:
        if args.json:
            print(json.dumps(prediction.__dict__))
        else:
            print(f"{prediction.file}: {prediction.class_name} ({prediction.probability:.4f})")
    for path, reason in failed:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if not files:
        print("error: no PNG or JPEG files in the given folders", file=sys.stderr)
    return 1 if failed or not files else 0


def main() -> None:
    """Console entry point ``digits-predict``."""
    from digits.runtime.native_log import quiet_command

    quiet_command()  # before TensorFlow loads: its C++ notices (digits/runtime/native_log.py)
    sys.exit(run())


if __name__ == "__main__":
    main()
