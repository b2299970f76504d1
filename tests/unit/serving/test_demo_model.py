"""The drawing page's model side (digits.serving.demo_model) and its page functions, in
process: a photo answers exactly as digits-predict does, the model is loaded the checked way,
files that are no image and a cleared canvas are answered with the reason."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers.strokes import (
    PARAMS,
    photo_of_a_zero,
    predict_cli,
    small_params,
    top_three,
    train_stroke_model,
)
from PIL import Image

from digits.errors import PipelineError
from digits.model.networks import build_model
from digits.serving import demo, demo_model
from digits.serving.images import prepare_image


@pytest.fixture(scope="module")
def stroke_model(tmp_path_factory) -> Path:
    """``helpers.strokes.train_stroke_model``'s .keras file."""
    return train_stroke_model(tmp_path_factory.mktemp("workspace"))


def test_a_photo_is_prepared_and_predicted_exactly_as_digits_predict_does(
    stroke_model, tmp_path, capsys
):
    photo = photo_of_a_zero(tmp_path)
    model = demo_model.load_demo_model(str(stroke_model), "mnist", PARAMS)
    result = demo_model.answer(model, photo)
    np.testing.assert_array_equal(result.image, prepare_image(photo))
    expected = predict_cli(capsys, photo, stroke_model)
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-12)
    assert [(name, f"{p:.4f}") for name, p in result.top] == top_three(expected)
    assert result.top[0][0] == "0"
    # The first conv block's output, one tile per filter, beside the input as visualize draws.
    assert len(demo_model.layer_figure(model, result).axes) > small_params().conv1_filters


def test_the_page_says_why_a_file_is_not_predicted(stroke_model, tmp_path):
    model = demo_model.load_demo_model(str(stroke_model), "mnist", PARAMS)
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    assert demo.page_outputs(model, text) == (
        None, None, "Not predicted: not a PNG or JPEG image.", None
    )  # fmt: skip
    assert demo.layer_picture(model, None) is None
    assert demo.page_outputs(model, None) == (None, None, demo.INSTRUCTIONS, None)


def test_a_cleared_canvas_is_no_drawing():
    blank = {"composite": Image.new("RGB", (40, 40), "white")}
    assert demo.drawing_file(blank) is None
    dot = Image.new("RGB", (40, 40), "white")
    dot.putpixel((20, 20), (0, 0, 0))
    assert demo.drawing_file({"composite": dot}).read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_missing_or_foreign_model_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"model missing\.keras: missing\.keras not found"):
        demo_model.load_demo_model("missing.keras", "mnist", PARAMS)
    (tmp_path / "model.h5").write_bytes(b"not loaded")
    with pytest.raises(PipelineError, match=r"only \.keras models are loaded"):
        demo_model.load_demo_model(str(tmp_path / "model.h5"), "mnist", PARAMS)


def test_a_champion_from_the_store_is_loaded_checked_and_a_swapped_file_refused(logged_model):
    keras_model, uri = logged_model
    client = mlflow.MlflowClient()
    version = mlflow.register_model(uri, "digits-cnn")
    client.set_registered_model_alias("digits-cnn", "champion", version.version)
    model = demo_model.load_demo_model("models:/digits-cnn@champion", "mnist", PARAMS)
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        model.keras_model.predict_on_batch(image), keras_model.predict_on_batch(image)
    )
    # Someone who can write the artifact store swaps the .keras file: refused by its digest.
    logged = client.get_logged_model(uri.removeprefix("models:/"))
    folder = Path(logged.artifact_location.removeprefix("file://"))
    build_model(small_params(seed=small_params().seed + 1)).save(folder / "data" / "model.keras")
    with pytest.raises(PipelineError, match="SHA-256 differs"):
        demo_model.load_demo_model("models:/digits-cnn@champion", "mnist", PARAMS)
