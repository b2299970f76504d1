"""digits-predict: image files give the in-memory model's answers; bad files are named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.idxdata import tiny_split
from helpers.paths import REPO_ROOT
from PIL import Image

from digits.data import idx
from digits.data.arrays import Split
from digits.model import training
from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace
from digits.serving.images import ImageError, read_image, to_training_format
from digits.serving.predict import run, softmax

# The offline mirror: DATA_MIRROR when set, else shared/datasets beside the clone (as in CI).
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO_ROOT.parent / "shared" / "datasets")
MNIST = MIRROR / "mnist"


def small_params(**changes):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return params_replace(
        params, **{"conv1_filters": 4, "conv2_filters": 8, "fc_size": 16, **changes}
    )


def write_png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path)
    return path


def predictions(capsys, argv: list[str]) -> tuple[int, list[dict], str]:
    code = run([*argv, "--json"])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_28x28_pngs_give_exactly_the_in_memory_classes_and_probabilities(tmp_path, capsys):
    split = tiny_split(20, seed=3)
    model = build_model(small_params())
    model.save(tmp_path / "model.keras")
    files = [
        str(write_png(np.round(image[..., 0] * 255).astype(np.uint8), tmp_path / f"{i:02d}.png"))
        for i, image in enumerate(split.x)
    ]
    code, found, err = predictions(
        capsys, [*files, "--model", str(tmp_path / "model.keras"), "--dataset", "mnist"]
    )
    assert code == 0, err
    expected = softmax(model.predict_on_batch(split.x))
    assert [row["file"] for row in found] == files
    assert [row["class_index"] for row in found] == list(expected.argmax(axis=1))
    assert [row["class_name"] for row in found] == [str(k) for k in expected.argmax(axis=1)]
    np.testing.assert_allclose([row["probabilities"] for row in found], expected, atol=1e-6)
    np.testing.assert_allclose(
        [row["probability"] for row in found], expected.max(axis=1), atol=1e-6
    )


def test_class_names_come_from_the_dataset_catalog(tmp_path, capsys):
    build_model(small_params()).save(tmp_path / "model.keras")
    bar = np.zeros((28, 28), np.uint8)
    bar[6:22, 12:16] = 255
    digit = write_png(bar, tmp_path / "bar.png")
    code, found, _ = predictions(
        capsys,
        [str(digit), "--model", str(tmp_path / "model.keras"), "--dataset", "fashion-mnist"],
    )
    catalog = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    assert code == 0 and found[0]["class_name"] == catalog[found[0]["class_index"]]


def test_large_dark_on_white_digits_are_fitted_and_centred_like_mnist(tmp_path):
    # A 10-pixel-wide bar drawn off-centre on a 300x200 white page, dark grey.
    page = np.full((200, 300), 240, np.uint8)
    page[20:120, 30:40] = 20
    result = to_training_format(read_image(write_png(page, tmp_path / "bar.png")))
    assert result.shape == (28, 28) and result.dtype == np.float32
    rows = np.nonzero(result > 0.5)[0]
    assert rows.max() - rows.min() + 1 == 20, "the longer side fills the 20-pixel box"
    centre = np.array(np.nonzero(result)).T.astype(float)
    mass = (centre * result[result > 0][:, None]).sum(axis=0) / result.sum()
    np.testing.assert_allclose(mass, [13.5, 13.5], atol=0.75)
    assert result[0, 0] == 0 and result.max() == pytest.approx(1.0, abs=0.02)


def test_bad_files_are_each_named_and_the_others_still_predicted(tmp_path):
    build_model(small_params()).save(tmp_path / "model.keras")
    good = write_png(np.round(tiny_split(1, seed=0).x[0, ..., 0] * 255).astype(np.uint8),
                     tmp_path / "good.png")  # fmt: skip
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.touch()
    tiny = write_png(np.zeros((1, 1), np.uint8), tmp_path / "tiny.png")
    missing = tmp_path / "missing.png"
    result = subprocess.run(
        [sys.executable, "-m", "digits.serving.predict", str(text), str(good), str(empty),
         str(missing), str(tiny), "--model", str(tmp_path / "model.keras"),
         "--dataset", "mnist"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.startswith(f"{good}: ") and len(result.stdout.splitlines()) == 1
    errors = result.stderr.strip().splitlines()[-4:]
    assert errors == [
        f"error: {text}: not a PNG or JPEG image",
        f"error: {empty}: empty file",
        f"error: {missing}: not found",
        f"error: {tiny}: 1x1 pixels is too small; need at least 8x8",
    ], result.stderr
    assert "Traceback" not in result.stderr


def test_a_blank_image_is_refused():
    with pytest.raises(ImageError, match="blank image"):
        to_training_format(Image.new("L", (100, 100), 255))


def test_the_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["digits-predict"].split(":")
    assert module == "digits.serving.predict" and callable(getattr(sys.modules[module], function))


def mnist_test_split(start: int, stop: int) -> Split:
    images = idx.read_images(MNIST / "t10k-images-idx3-ubyte.gz")[start:stop]
    labels = idx.read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[start:stop]
    x = images[..., None].astype(np.float32) / 255.0
    return Split(x, np.eye(10, dtype=np.float32)[labels], tuple("0123456789"))


@pytest.mark.slow
def test_200x200_dark_on_white_digits_keep_95_percent_of_their_predictions(tmp_path, capsys):
    if not MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{MNIST} is missing: CI must put shared/datasets beside the clone")
        pytest.skip(f"{MNIST} not on this machine")
    # MNIST's training images are not in the offline mirror: train briefly on test images
    # 1,000-9,999 and predict the first 200, which training never saw.
    params = small_params(
        conv1_filters=16, conv2_filters=36, fc_size=128, steps=500, eval_every=500,
        learning_rate=1e-3,
    )  # fmt: skip
    model = training.train(
        params, mnist_test_split(1000, 10000), mnist_test_split(500, 1000)
    ).model
    model.save(tmp_path / "model.keras")
    digits = mnist_test_split(0, 200)
    in_memory = model.predict_on_batch(digits.x).argmax(axis=1)
    folder = tmp_path / "big"
    folder.mkdir()
    for i, image in enumerate(np.round(digits.x[..., 0] * 255).astype(np.uint8)):
        drawn = Image.fromarray(255 - image).resize((200, 200), Image.Resampling.BICUBIC)
        drawn.save(folder / f"{i:03d}.png")
    code, found, err = predictions(
        capsys, [str(folder), "--model", str(tmp_path / "model.keras"), "--dataset", "mnist"]
    )
    assert code == 0, err
    assert [Path(row["file"]).name for row in found] == [f"{i:03d}.png" for i in range(200)]
    kept = np.mean(np.array([row["class_index"] for row in found]) == in_memory)
    print(f"kept {kept:.1%} of 200 predictions at 200x200 dark on white")
    assert kept >= 0.95


def test_the_installed_console_script_prints_the_class_and_probability(tmp_path):
    # The entry point pip wrote into this environment, not the module run by path.
    script = Path(sys.executable).with_name("digits-predict")
    assert script.is_file(), f"{script} missing: install the project (`make install-test`)"
    model = build_model(small_params())
    model.save(tmp_path / "model.keras")
    image = tiny_split(1, seed=4).x[:1]
    digit = write_png(np.round(image[0, ..., 0] * 255).astype(np.uint8), tmp_path / "digit.png")
    result = subprocess.run(
        [str(script), str(digit), "--model", str(tmp_path / "model.keras"), "--dataset", "mnist"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = softmax(model.predict_on_batch(image))[0]
    name, _, probability = result.stdout.strip().removeprefix(f"{digit}: ").partition(" (")
    assert name == str(expected.argmax()), result.stdout
    assert float(probability.removesuffix(")")) == pytest.approx(expected.max(), abs=6e-5)


def test_the_console_script_shows_no_tensorflow_notices(tmp_path):
    script = Path(sys.executable).with_name("digits-predict")
    build_model(small_params()).save(tmp_path / "model.keras")
    digit = write_png(
        np.full((28, 28), 255, np.uint8) * np.eye(28, dtype=np.uint8), tmp_path / "d.png"
    )
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [str(script), str(digit), "--model", str(tmp_path / "model.keras"), "--dataset", "mnist"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith(f"{digit}: "), result.stderr
    assert result.stderr == "", "absl's preamble or TensorFlow's INFO lines"
