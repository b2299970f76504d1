"""Keras models built from the ``train`` params.

``cnn`` is the classic TensorFlow tutorial network: conv -> 2x2 max-pool -> ReLU, twice, then
a fully connected ReLU layer and 10 logits (softmax lives in the loss). Weights start
truncated-normal (stddev 0.05), biases at 0.05, as in the tutorial. (ReLU before pooling gives
the same outputs, since ReLU is monotonic, but it would change each layer's output that
visualize draws, so the tutorial's order stays; its speed: docs/performance.md.)

``precision: bfloat16`` computes every layer but the logits in bfloat16 (Keras'
``mixed_bfloat16`` policy: weights stay float32); the logits, and so the loss, stay float32.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from digits.data.shapes import IMAGE_SHAPE, NUM_CLASSES
from digits.errors import DataError
from digits.params import TrainParams

INIT_STDDEV = 0.05
INIT_BIAS = 0.05


@keras.saving.register_keras_serializable(package="digits")
class Conv2D(keras.layers.Conv2D):
    """Keras' ``Conv2D`` with the bias added by ``tf.nn.bias_add``: same weights, same outputs.

    Keras adds the bias reshaped to (1, 1, 1, filters), a plain broadcast addition, which
    TensorFlow's graph optimizer does not take for a bias: the convolution and the addition
    ran as two kernels. With ``bias_add`` it fuses them into one oneDNN convolution, as it
    does in the TF1 tutorial's graph, which makes inference and training faster
    (docs/performance.md). Saved models name it
    ``digits>Conv2D``; importing this module registers it for loading.
    """

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            layout = "NHWC" if self.data_format == "channels_last" else "NCHW"
            outputs = tf.nn.bias_add(outputs, self.bias, data_format=layout)
        return outputs if self.activation is None else self.activation(outputs)


def build_model(params: TrainParams) -> keras.Model:
    """Build the (uncompiled) model named by ``params.model``; outputs are logits.

    Layer names are stable (``conv1``, ``conv2``, ``fc``, ``logits``) because the visualize
    stage looks them up.
    """
    seeds = iter(range(params.seed * 100, params.seed * 100 + 100))
    # None: Keras' default float32 policy, so a float32 model is saved as it always was.
    mixed = params.precision == "bfloat16"
    dtype = "mixed_bfloat16" if mixed else None

    def dense(units: int, name: str, activation: str | None = None) -> keras.layers.Dense:
        return keras.layers.Dense(
            units, activation=activation, name=name, dtype=dtype, **_initializers(next(seeds))
        )

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")  # (batch, 28, 28, 1) float32 in [0, 1]
    hidden = inputs
    if params.model == "cnn":
        for index, filters in enumerate((params.conv1_filters, params.conv2_filters), start=1):
            hidden = Conv2D(
                filters,
                params.kernel_size,
                padding=params.padding,
                name=f"conv{index}",
                dtype=dtype,
                **_initializers(next(seeds)),
            )(hidden)
            hidden = keras.layers.MaxPooling2D(
                2, padding=params.padding, name=f"pool{index}", dtype=dtype
            )(hidden)
            hidden = keras.layers.ReLU(name=f"relu{index}", dtype=dtype)(hidden)
    hidden = keras.layers.Flatten(name="flatten", dtype=dtype)(hidden)
    if params.model in ("cnn", "mlp"):
        hidden = dense(params.fc_size, "fc", activation="relu")(hidden)
        if params.dropout > 0:
            hidden = keras.layers.Dropout(
                params.dropout, seed=next(seeds), name="dropout", dtype=dtype
            )(hidden)
    # Logits in float32 whatever the precision: the loss and softmax need its range.
    outputs = keras.layers.Dense(
        NUM_CLASSES,
        name="logits",
        dtype="float32" if mixed else None,
        **_initializers(next(seeds)),
    )(hidden)
    return keras.Model(inputs, outputs, name=params.model)


def conv_layers(model: keras.Model) -> list[keras.layers.Conv2D]:
    """The model's convolutional layers in order (empty for ``mlp`` and ``softmax``)."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def model_summary(model: keras.Model) -> str:
    """One line per layer: name, type, output shape, parameters; then the totals."""
    rows = [("layer", "type", "output shape", "parameters")]
    for layer in model.layers:
        shape = ", ".join(str(size) for size in layer.output.shape[1:])
        rows.append(
            (layer.name, type(layer).__name__, f"(batch, {shape})", f"{layer.count_params():,}")
        )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"Model: {model.name}"]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    lines.append(f"Total parameters: {model.count_params():,} (trainable: {trainable:,})")
    return "\n".join(lines) + "\n"


def _initializers(seed: int) -> dict:
    return {
        "kernel_initializer": keras.initializers.TruncatedNormal(stddev=INIT_STDDEV, seed=seed),
        "bias_initializer": keras.initializers.Constant(INIT_BIAS),
    }


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save ``model`` as a ``.keras`` archive whose bytes depend only on the model.

    Keras stores the save time (``metadata.json``), Python object ids (``shared_object_id``
    in ``config.json``) and zip entry times; all three are made fixed here, so the same
    weights give the same file (and DVC hash) on every run and machine. Object ids are
    renumbered in order of first appearance, which keeps the objects shared on load.
    """
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            archive.writestr(fixed, data)


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def _renumber_shared_objects(node, numbers: dict[int, int]):
    """``node`` with each ``shared_object_id`` replaced by 1, 2, ... in order of appearance."""
    if isinstance(node, list):
        return [_renumber_shared_objects(item, numbers) for item in node]
    if not isinstance(node, dict):
        return node
    renumbered = {}
    for key, value in node.items():
        if key == "shared_object_id":
            renumbered[key] = numbers.setdefault(value, len(numbers) + 1)
        else:
            renumbered[key] = _renumber_shared_objects(value, numbers)
    return renumbered


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model saved by the train stage, in Keras safe mode (no arbitrary code).

    Raises:
        DataError: The file is missing, damaged or not a Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro train` first")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive.
        raise DataError(
            f"{path} is damaged or not a Keras model ({type(error).__name__}: {error}); "
            "rerun `dvc repro --force train`"
        ) from None


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, 28, 28, 1) images -> (n, 10) logits, in inference mode, ``batch_size`` at a time.

    One compiled call per slice of ``images``: unlike ``model.predict``, no input pipeline
    copies the whole array first (on the 55,000 training images that copy raised the train
    stage's peak memory), and each batch costs less.
    """
    batches = [
        model.predict_on_batch(images[start : start + batch_size])
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(batches) if batches else np.zeros((0, NUM_CLASSES), np.float32)


def logit_loss_and_accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of (n, 10) ``logits`` against one-hot labels ``y``."""
    loss = keras.losses.categorical_crossentropy(y, logits, from_logits=True)
    accuracy = np.mean(np.argmax(logits, axis=1) == np.argmax(y, axis=1))
    return float(np.mean(loss)), float(accuracy)
