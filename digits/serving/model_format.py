"""What a logged model is: its ``.keras`` data file and digest, and its signature.

A model is logged (``digits.tracking.logger``) with the ``.keras`` file as its only data, the
file's SHA-256 as a run tag, the image signature (``image_signature``) and a PNG input example
(``example_frame``); ``digits.serving.pyfunc`` loads it. Predicting and serving check a
fetched file against the digest (``check_keras_file``) before Keras opens it.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from digits.data.shapes import IMAGE_SHAPE, NUM_CLASSES

KERAS_FILE = "model.keras"  # the model's data file, ``data/model.keras`` in a logged model
IMAGE_COLUMN = "image"  # the input column of the logged signature
_CHUNK = 1 << 20  # bytes read at a time when hashing


class ModelFileError(ValueError):
    """A model file that is not loaded: not ``.keras``, or not the file the run recorded."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_keras_file(path: str | os.PathLike[str], sha256: str | None = None) -> Path:
    """``path`` if it names a ``.keras`` file (and, given ``sha256``, has that digest).

    Raises:
        ModelFileError: Another suffix (``.h5`` and SavedModel folders are not loaded), or
            a digest other than ``sha256``.
        FileNotFoundError: Given ``sha256``, the file is missing.
    """
    path = Path(path)
    if path.suffix != ".keras" or path.is_dir():
        raise ModelFileError(f"{path} is not a .keras file; only .keras models are loaded")
    if sha256 is not None and sha256_of(path) != sha256:
        raise ModelFileError(
            f"{path.name} is not the file its run recorded (SHA-256 differs): it was replaced "
            "after training; log the model again from a trusted training run"
        )
    return path


def model_signature():
    """The tensor signature: (-1, 28, 28, 1) float32 -> (-1, 10) float32 logits.

    MLflow's scoring server checks tensor requests against it (``digits.serving.app``).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *IMAGE_SHAPE))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, NUM_CLASSES))]),
    )


def image_signature():
    """The signature a model is logged with: image files in, one row per image out.

    Input: a column ``image`` of PNG or JPEG bytes (base64 in JSON). Output: ``class_index``
    (long), ``class_name`` (string) and ``probabilities`` (array of double). An MLflow schema
    holds tensors or columns, never both, so the tensor input the model also takes is not
    in it (``model_signature``).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]),
        outputs=Schema([
            ColSpec(DataType.long, "class_index"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(Array(DataType.double), "probabilities"),
        ]),
    )  # fmt: skip


def example_frame(images: np.ndarray):
    """The first of (n, 28, 28, 1) float32 images as a PNG file in a one-row DataFrame: a
    logged model's input example."""
    import pandas as pd
    from PIL import Image

    pixels = np.round(np.clip(images[0, ..., 0], 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buffer.getvalue()]})
