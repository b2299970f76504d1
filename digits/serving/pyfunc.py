"""The MLflow pyfunc of a trained model, loaded by this installed package only.

A model is logged with ``loader_module="digits.serving.pyfunc"`` and its ``.keras`` file as the
model's data, nothing else: no pickled Python object and no ``code_paths``. MLflow imports
this module from the environment that loads the model and calls ``_load_pyfunc`` with the
path of the ``.keras`` file; Keras loads it in safe mode (no Python from the file runs).

The model traces its forward pass once when it is loaded (``tf.function`` with a fixed input
signature) and runs only that per call: ``keras.Model.predict`` would build a ``tf.data``
pipeline on every request. It takes, n at most ``MAX_BATCH`` a call:

- images: PNG or JPEG files as bytes, or as base64 text (JSON), in a one-column DataFrame,
  a list or a 1-D array. Each is prepared by ``digits.serving.images.prepare_image``, as
  ``digits-predict`` prepares a file; the answer is a DataFrame, one row per image:
  ``class_index``, ``class_name`` (from the dataset catalog) and ``probabilities`` (softmax
  of the logits, float64, as ``digits-predict`` prints them).
- tensors: (n, 28, 28, 1) float32 in [0, 1]; the answer is (n, 10) float32 logits.

The model's dataset (which class names, which preparation) is the ``dataset`` of the
logged model's ``model_config``, set when the train stage logs it.

The digest check against the run (``digits.serving.logged_model``) happens before a file reaches
``_load_pyfunc``: MLflow hands a loader module only a path (``digits.serving.model_format``
says what a logged model holds). NumPy is the only import at load;
TensorFlow and MLflow are imported when a model is loaded or refuses an input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from digits.serving.model_format import check_keras_file

MAX_BATCH = 1024  # images in one call (one request); larger batches are refused


class LogitsModel:
    """Images -> classes and probabilities, or (n, 28, 28, 1) float32 -> (n, 10) logits.

    One compiled forward pass per call. ``dataset`` (e.g. ``mnist``) names the class names
    and the preparation of images; a model without it takes only tensors.
    """

    def __init__(self, keras_model, dataset: str | None = None) -> None:
        import tensorflow as tf

        self.keras_model = keras_model
        self.dataset = dataset
        self._class_names: tuple[str, ...] | None = None  # read from the catalog once
        self._forward = tf.function(
            lambda images: keras_model(images, training=False),
            input_signature=[tf.TensorSpec((None, *keras_model.input_shape[1:]), tf.float32)],
        )
        self._forward.get_concrete_function()  # trace now: the first request is not slower

    def get_raw_model(self):
        """The Keras model (``PyFuncModel.get_raw_model``)."""
        return self.keras_model

    def predict(self, model_input, params: dict | None = None):
        """Classes of image files (``predict_images``), or logits of a tensor
        (``predict_tensor``), as ``image_files_of`` tells them apart."""
        from digits.serving.image_requests import image_files_of

        files = image_files_of(model_input)
        if files is not None:
            return self.predict_images(files)
        return self.predict_tensor(model_input)

    def predict_images(self, files: Sequence[bytes | str]):
        """One row per image file: ``class_index``, ``class_name``, ``probabilities``
        (``digits.serving.image_requests.classify``).

        Raises:
            MlflowException: More than ``MAX_BATCH`` images, a model without a dataset, or
                an image that cannot be prepared, named by its index (the server answers 400).
        """
        from digits.serving.image_requests import class_names_of, classify
        from digits.serving.images import style_of

        self._check_count(len(files))
        if self.dataset is None:
            raise invalid_input(
                "this model does not record its dataset, so it cannot name classes or prepare "
                "images: send (n, 28, 28, 1) float32 tensors, or log the model again"
            )
        if self._class_names is None:
            self._class_names = class_names_of(self.dataset)  # read the catalog once
        return classify(
            files, style_of(self.dataset), self._class_names, lambda x: self._forward(x).numpy()
        )

    def _check_count(self, count: int) -> None:
        """Refuse a call of more than ``MAX_BATCH`` images."""
        if count > MAX_BATCH:
            raise invalid_input(
                f"{count} images in one request; at most {MAX_BATCH} are "
                "accepted: send them in several requests"
            )

    def predict_tensor(self, model_input: np.ndarray) -> np.ndarray:
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
            raise invalid_input(
                f"dtype of input {dtype} does not match expected dtype float32: send images "
                "as float32 in [0, 1], shape (n, 28, 28, 1)"
            )
        self._check_count(len(model_input))
        return self._forward(model_input).numpy()


def invalid_input(message: str) -> Exception:
    """An MLflow error the scoring server answers with 400 and ``message``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def load_keras(
    path: str | os.PathLike[str], sha256: str | None = None, dataset: str | None = None
) -> LogitsModel:
    """The model of a ``.keras`` file (checked as ``check_keras_file``), in Keras safe mode,
    for ``dataset`` (None: tensors only).

    Raises:
        ModelFileError: Not a ``.keras`` file, or not the one with digest ``sha256``.
        DataError: The file is damaged or not a Keras model.
    """
    from digits.model.networks import load_model  # registers the model's own layers

    return LogitsModel(load_model(check_keras_file(path, sha256)), dataset)


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> LogitsModel:
    """MLflow's entry point for a loader module: the model of the ``.keras`` data file, for
    the ``dataset`` of the logged ``model_config``."""
    dataset = (model_config or {}).get("dataset")
    return load_keras(data_path, dataset=dataset if isinstance(dataset, str) else None)
