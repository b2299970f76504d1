"""The MLflow pyfunc of a trained model, loaded by this installed package only.

A model is logged with ``loader_module="digits.serving.pyfunc"`` and its ``.keras`` file as the
model's data, nothing else: no pickled Python object and no ``code_paths``. MLflow imports
this module from the environment that loads the model and calls ``_load_pyfunc`` with the
path of the ``.keras`` file; Keras loads it in safe mode (no Python from the file runs).

The model traces its forward pass once when it is loaded (``tf.function`` with a fixed input
signature) and runs only that per call: ``keras.Model.predict`` would build a ``tf.data``
pipeline on every request. Input: (n, 28, 28, 1) float32 in [0, 1], n at most
``MAX_BATCH``. Output: (n, 10) float32 logits.

The digest check against the run (``digits.serving.logged_model``) happens before a file reaches
``_load_pyfunc``: MLflow hands a loader module only a path. NumPy is the only import at load;
TensorFlow and MLflow are imported when a model is loaded or refuses an input.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from digits.data.shapes import IMAGE_SHAPE, NUM_CLASSES

KERAS_FILE = "model.keras"  # the model's data file, ``data/model.keras`` in a logged model
MAX_BATCH = 1024  # images in one call (one request); larger batches are refused
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
    """The signature every logged model has: (-1, 28, 28, 1) float32 -> (-1, 10) float32."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *IMAGE_SHAPE))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, NUM_CLASSES))]),
    )


class LogitsModel:
    """(n, 28, 28, 1) float32 images -> (n, 10) logits, one compiled call per request."""

    def __init__(self, keras_model) -> None:
        import tensorflow as tf

        self.keras_model = keras_model
        self._forward = tf.function(
            lambda images: keras_model(images, training=False),
            input_signature=[tf.TensorSpec((None, *keras_model.input_shape[1:]), tf.float32)],
        )
        self._forward.get_concrete_function()  # trace now: the first request is not slower

    def get_raw_model(self):
        """The Keras model (``PyFuncModel.get_raw_model``)."""
        return self.keras_model

    def predict(self, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """Logits of ``model_input``, (n, 28, 28, 1) float32, n at most ``MAX_BATCH``.

        MLflow checks the shape against the signature; it checks the dtype of JSON but not
        of a Parquet column of arrays
        (``mlflow.models.utils._reshape_and_cast_pandas_column_values``), so it is checked
        here too: a float64 image would otherwise be cast silently.

        Raises:
            MlflowException: Not float32, or more than ``MAX_BATCH`` images (the server
                answers 400 with the message).
        """
        dtype = getattr(model_input, "dtype", None)
        if dtype != np.float32:
            raise _invalid(
                f"dtype of input {dtype} does not match expected dtype float32: send images "
                "as float32 in [0, 1], shape (n, 28, 28, 1)"
            )
        if len(model_input) > MAX_BATCH:
            raise _invalid(
                f"{len(model_input)} images in one request; at most {MAX_BATCH} are "
                "accepted: send them in several requests"
            )
        return self._forward(model_input).numpy()


def _invalid(message: str) -> Exception:
    """An MLflow error the scoring server answers with 400 and ``message``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def load_keras(path: str | os.PathLike[str], sha256: str | None = None) -> LogitsModel:
    """The model of a ``.keras`` file (checked as ``check_keras_file``), in Keras safe mode.

    Raises:
        ModelFileError: Not a ``.keras`` file, or not the one with digest ``sha256``.
        DataError: The file is damaged or not a Keras model.
    """
    from digits.model.networks import load_model  # registers the model's own layers

    return LogitsModel(load_model(check_keras_file(path, sha256)))


def _load_pyfunc(data_path: str) -> LogitsModel:
    """MLflow's entry point for a loader module: the model of the ``.keras`` data file."""
    return load_keras(data_path)
