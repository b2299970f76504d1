"""Image files sent to the served model: found in a request, prepared, answered with names.

A request's images are PNG or JPEG files, as ``bytes`` or as base64 text (JSON), in one
column (``model_format.IMAGE_COLUMN`` in the logged signature). Each is prepared by
``digits.serving.images.prepare_image``, the function ``digits-predict`` uses, so a file gets
the same checks, caps and input either way; a file that fails is named by its index in the
request (from 0). The answer has one row per image: ``class_index``, ``class_name`` (from
the dataset catalog) and ``probabilities`` (``digits.serving.predict.softmax``, float64).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from digits.serving.pyfunc import invalid_input


def image_files_of(model_input: object) -> list[bytes | str] | None:
    """The image files in ``model_input``, or None when it holds no images (a tensor).

    Images are ``bytes`` (a file's content) or ``str`` (base64 of it), given as a DataFrame
    of one column, a dict of one column (JSON ``{"inputs": {"image": [...]}}``), a 1-D
    array or a list.
    """
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if len(model_input.columns) != 1:
            return None
        values = list(model_input.iloc[:, 0])
    elif isinstance(model_input, dict) and len(model_input) == 1:
        (column,) = model_input.values()
        values = list(np.ravel(np.asarray(column, dtype=object)))
    elif isinstance(model_input, np.ndarray) and model_input.dtype.kind in "OSU":
        values = list(np.ravel(model_input))
    elif isinstance(model_input, list | tuple):
        values = list(model_input)
    else:
        return None
    return values if values and all(isinstance(v, bytes | str) for v in values) else None


def file_bytes(value: bytes | str, index: int) -> bytes:
    """A file's bytes from ``bytes`` as they are, or from base64 text (line breaks allowed).

    Raises:
        MlflowException: Text that is not base64 (400 naming image ``index``).
    """
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise invalid_input(
            f"image {index}: not base64 text of a PNG or JPEG file ({error})"
        ) from None


def class_names_of(dataset: str) -> tuple[str, ...]:
    """The class names of ``dataset`` in the catalog (``digits.serving.predict``).

    Raises:
        MlflowException: The dataset is not in the catalog.
    """
    from digits.errors import PipelineError
    from digits.serving.predict import class_names_for

    try:
        return class_names_for(dataset, Path("params.yaml"))[1]
    except PipelineError as error:
        raise invalid_input(f"the model's dataset: {error}") from None


def classify(
    files: Sequence[bytes | str],
    style: str,
    class_names: Sequence[str],
    logits_of: Callable[[np.ndarray], np.ndarray],
):
    """One row per file: ``class_index``, ``class_name`` and ``probabilities``.

    Args:
        files: PNG or JPEG files, bytes or base64 text.
        style: The preparation, ``digits`` or ``garments`` (``images.style_of``).
        class_names: The dataset's class names, by index.
        logits_of: (n, 28, 28, 1) float32 -> (n, 10) logits.

    Raises:
        MlflowException: A file that cannot be prepared: the message names it by its index
            and says why.
    """
    import pandas as pd

    from digits.serving.images import ImageError, prepare_image
    from digits.serving.predict import softmax

    inputs = []
    for index, value in enumerate(files):
        try:
            inputs.append(prepare_image(io.BytesIO(file_bytes(value, index)), style))
        except ImageError as error:
            raise invalid_input(f"image {index}: {error}") from None
    probabilities = softmax(logits_of(np.stack(inputs)[..., np.newaxis]))
    indices = probabilities.argmax(axis=1)
    return pd.DataFrame({
        "class_index": indices.astype(np.int64),
        "class_name": [class_names[k] for k in indices],
        "probabilities": [row.tolist() for row in probabilities],
    })  # fmt: skip
