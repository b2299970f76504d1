"""What the drawing page (``digits.serving.demo``) asks of a model: loading it, its answers.

The model is loaded as ``digits-predict`` and ``make serve`` load it: a ``.keras`` file in
Keras safe mode, or an MLflow model URI whose ``.keras`` file is first checked against its run
(``digits.serving.logged_model``). Each drawing or photo goes through
``digits.serving.images.prepare_image``, the function ``digits-predict`` uses; the answer holds
the 28x28 image the network gets, the three most likely classes (names from the dataset
catalog) and the first conv block's output, drawn by
``digits.figures.network.layer_output_figure`` as the visualize stage draws it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from digits.errors import PipelineError

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    import keras
    from matplotlib.figure import Figure

TOP_CLASSES = 3


@dataclass(frozen=True)
class DemoModel:
    """A loaded model and what the page needs to name its answers."""

    keras_model: keras.Model
    source: str  # the .keras file or MLflow URI it was loaded from
    dataset: str
    class_names: tuple[str, ...]
    first_block: tuple[str, keras.Model] | None  # ``first_block`` of ``keras_model``

    @property
    def style(self) -> str:
        """How ``prepare_image`` frames an image for this dataset."""
        return "garments" if self.dataset == "fashion-mnist" else "digits"


@dataclass(frozen=True)
class Answer:
    """The model's answer for one drawing or photo."""

    image: np.ndarray  # (28, 28) float32 in [0, 1]: the network's input
    probabilities: np.ndarray  # (10,) float64
    top: list[tuple[str, float]]  # the TOP_CLASSES most likely (class name, probability)


def load_demo_model(model: str, dataset: str | None, params: Path) -> DemoModel:
    """Load ``model`` (a ``.keras`` file or an MLflow model URI) and its class names.

    An MLflow URI resolves in the store the stages write (``MLFLOW_TRACKING_URI``, else the
    workspace's ``mlflow.db``); only its ``.keras`` file is used, once its SHA-256 matches its
    run's. Class names: ``dataset``, else the model's run tag ``dataset``, else
    ``data.dataset`` of ``params`` (``digits.serving.predict.class_names_for``).

    Raises:
        PipelineError: The model is missing, refused or damaged, or its dataset is unknown.
    """
    from digits.errors import DataError
    from digits.serving.model_format import ModelFileError
    from digits.serving.predict import class_names_for, is_mlflow_uri
    from digits.serving.pyfunc import load_keras

    model_dataset = None
    try:
        if is_mlflow_uri(model):
            import mlflow

            from digits.serving.logged_model import fetch_checked
            from digits.tracking.mlflow_store import resolve_store

            mlflow.set_tracking_uri(resolve_store(os.environ, Path.cwd()).tracking_uri)
            with tempfile.TemporaryDirectory(prefix="digits-demo-") as folder:
                checked = fetch_checked(model, folder)
                keras_model = load_keras(checked.keras_path, checked.sha256).keras_model
            model_dataset = checked.dataset
        else:
            keras_model = load_keras(model).keras_model
    except (ModelFileError, DataError) as error:
        raise PipelineError(f"model {model}: {error}") from None
    name, class_names = class_names_for(dataset or model_dataset, params)
    return DemoModel(keras_model, model, name, class_names, first_block(keras_model))


def first_block(model: keras.Model) -> tuple[str, keras.Model] | None:
    """The first conv layer's name and the model up to its block's output (the conv layer and
    the pooling and ReLU right after it, as visualize draws it); None without conv layers."""
    import keras

    from digits.model.networks import conv_layers

    convs = conv_layers(model)
    if not convs:
        return None
    layers = model.layers
    position = layers.index(convs[0])
    while position + 1 < len(layers) and isinstance(
        layers[position + 1], keras.layers.MaxPooling2D | keras.layers.ReLU
    ):
        position += 1
    return convs[0].name, keras.Model(model.inputs, layers[position].output)


def answer(model: DemoModel, source: str | os.PathLike[str] | BinaryIO) -> Answer:
    """Prepare an image file as ``digits-predict`` does and predict it.

    Raises:
        ImageError: The file cannot be made into an input (``prepare_image``); the message
            says why.
    """
    from digits.model.networks import predict_logits
    from digits.serving.images import prepare_image
    from digits.serving.predict import BATCH_SIZE, softmax

    image = prepare_image(source, model.style)  # (28, 28) float32 in [0, 1]
    batch = image[np.newaxis, ..., np.newaxis]  # (1, 28, 28, 1)
    probabilities = softmax(predict_logits(model.keras_model, batch, BATCH_SIZE))[0]
    order = np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]
    top = [(model.class_names[i], float(probabilities[i])) for i in order]
    return Answer(image, probabilities, top)


def layer_figure(model: DemoModel, answered: Answer) -> Figure | None:
    """The first conv block's output for the answered image, beside it, as visualize draws it;
    None for a model without conv layers."""
    from digits.figures.network import layer_output_figure

    if model.first_block is None:
        return None
    name, outputs = model.first_block
    batch = answered.image[np.newaxis, ..., np.newaxis]  # (1, 28, 28, 1)
    # A bfloat16 model's layers output bfloat16, which matplotlib cannot scale.
    output = np.asarray(outputs.predict_on_batch(batch)[0], dtype=np.float32)
    title = f"{name} output after pool and ReLU (predicted: {answered.top[0][0]})"
    return layer_output_figure(batch[0], output, title)


def answer_line(top: list[tuple[str, float]]) -> str:
    """The top classes as ``digits-predict`` prints a probability: ``1 (0.9731), 7 (0.0210)``."""
    return ", ".join(f"{name} ({probability:.4f})" for name, probability in top)
