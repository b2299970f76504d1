"""Digits drawn as strokes (ones as slanted bars, zeros as rings) and a small CNN trained on
them that tells a one from a zero: the model of the drawing page's tests (make demo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digits.data.arrays import Split
from digits.model import training
from digits.params import load_params
from digits.params import replace as params_replace
from digits.serving.images import to_training_format
from digits.serving.predict import run as predict_run
from helpers.paths import REPO_ROOT

PARAMS = REPO_ROOT / "params.yaml"
DIGITS = tuple("0123456789")


def stroke_digit(label: int, rng: np.random.Generator, paper: int = 255) -> Image.Image:
    """A 280x280 grey picture of a one (a slanted bar) or a zero (a ring), dark on ``paper``."""
    image = Image.new("L", (280, 280), paper)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(12, 30))
    if label == 1:
        x, slant = rng.uniform(100, 180), rng.uniform(-40, 40)
        top, bottom = rng.uniform(30, 80), rng.uniform(200, 250)
        draw.line([(x + slant / 2, top), (x - slant / 2, bottom)], fill=0, width=width)
    else:
        centre_x, centre_y = rng.uniform(110, 170, size=2)
        radius_x, radius_y = rng.uniform(40, 80), rng.uniform(70, 110)
        box = [centre_x - radius_x, centre_y - radius_y, centre_x + radius_x, centre_y + radius_y]
        draw.ellipse(box, outline=0, width=width)
    return image


def stroke_split(count: int, seed: int) -> Split:
    """``count`` stroke digits, ones and zeros in turn, in the training format."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = [to_training_format(stroke_digit(int(label), rng)) for label in labels]
    return Split(np.stack(images)[..., None], np.eye(10, dtype=np.float32)[labels], DIGITS)


def small_params(**changes):
    params = load_params(PARAMS, sections=("train",)).train
    return params_replace(
        params, **{"conv1_filters": 8, "conv2_filters": 8, "fc_size": 16, **changes}
    )


def train_stroke_model(workspace: Path) -> Path:
    """A small CNN trained on 300 stroke digits that tells a one from a zero, saved where the
    train stage writes it in ``workspace`` (``models/model.keras``); its path."""
    params = small_params(steps=120, eval_every=60, learning_rate=1e-3, batch_size=32)
    result = training.train(params, stroke_split(300, seed=1), stroke_split(40, seed=2))
    assert result.metrics["val_accuracy"] == 1.0, result.metrics
    path = workspace / "models" / "model.keras"
    path.parent.mkdir(parents=True)
    result.model.save(path)
    return path


def photo_of_a_zero(folder: Path) -> Path:
    """A PNG of a zero drawn dark on grey paper, larger than 28x28, in ``folder``."""
    path = folder / "zero.png"
    stroke_digit(0, np.random.default_rng(7), paper=215).save(path)
    return path


def predict_cli(capsys, path: Path, model: Path) -> np.ndarray:
    """digits-predict's probabilities for one file."""
    assert predict_run([str(path), "--model", str(model), "--dataset", "mnist", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    return np.array(json.loads(line)["probabilities"])


def top_three(probabilities: np.ndarray) -> list[tuple[str, str]]:
    """The three most likely digits and their probabilities as the page prints them."""
    order = np.argsort(-probabilities, kind="stable")[:3]
    return [(DIGITS[i], f"{probabilities[i]:.4f}") for i in order]
