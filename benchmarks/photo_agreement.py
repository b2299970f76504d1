"""Benchmark: photo-like files of MNIST digits keep the prediction of the clean 28x28 digit.

Each digit is enlarged to 200x200 and drawn dark on light paper, then changed one way per
kind (``PHOTO_KINDS``): sensor noise, uneven lighting, a low-quality JPEG on tinted paper, a
small rotation, small and off-centre on a large canvas, thick strokes. Each file is prepared
by ``digits.serving.images.prepare_image`` (as ``digits-predict`` and the server do) and
predicted; the table gives, per kind, how often the class equals the clean digit's.

    python -m benchmarks.photo_agreement              # MNIST from ../shared/datasets/mnist
    python -m benchmarks.photo_agreement --mnist DIR --count 200

MNIST's training images are not in the offline mirror: the model is trained briefly on test
images 1,000-9,999 (validation 500-999) and the first ``--count`` digits, which training
never saw, are the ones redrawn.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO_SIDE = 200  # pixels: a digit's side once enlarged
PAPER = 235  # grey level of white paper in a photo
INK = 30  # grey level of the pen


def on_paper(digit: np.ndarray, side: int = PHOTO_SIDE) -> np.ndarray:
    """A (28, 28) uint8 light-on-dark digit as a (side, side) float32 photo, dark on paper."""
    big = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    return PAPER - np.asarray(big, np.float32) * (PAPER - INK) / 255


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def sensor_noise(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Gaussian noise of 25 grey levels (0-255) on every pixel."""
    return _png(on_paper(digit) + rng.normal(0, 25, (PHOTO_SIDE, PHOTO_SIDE)))


def uneven_light(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Light falling off across the page: one corner at full light, the other at 45%."""
    angle = rng.uniform(0, 2 * np.pi)
    rows, columns = np.mgrid[0:PHOTO_SIDE, 0:PHOTO_SIDE] / (PHOTO_SIDE - 1) - 0.5
    ramp = rows * np.sin(angle) + columns * np.cos(angle)  # -0.71..0.71
    light = 1.0 - 0.55 * (ramp - ramp.min()) / (ramp.max() - ramp.min())
    return _png(on_paper(digit) * light)


def tinted_jpeg(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Colour JPEG at quality 15 on cream-tinted paper."""
    grey = on_paper(digit) / PAPER
    tint = np.array([245, 228, 190], np.float32) * rng.uniform(0.9, 1.0)
    colour = np.clip(grey[..., None] * tint, 0, 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(colour).save(buffer, "JPEG", quality=15)
    return buffer.getvalue()


def rotated(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Turned by 5 to 12 degrees either way, the corners filled with paper."""
    angle = rng.uniform(5, 12) * rng.choice([-1, 1])
    image = Image.fromarray(on_paper(digit).round().astype(np.uint8))
    return _png(np.asarray(image.rotate(angle, Image.Resampling.BICUBIC, fillcolor=PAPER)))


def small_off_centre(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """60x60 pixels, somewhere on a 600x450 page."""
    page = np.full((450, 600), PAPER, np.float32)
    top, left = rng.integers(0, 450 - 60), rng.integers(0, 600 - 60)
    page[top : top + 60, left : left + 60] = on_paper(digit, 60)
    return _png(page)


def thick_strokes(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """The pen twice as wide: dark strokes grown by 9 pixels (a 9x9 minimum filter)."""
    image = Image.fromarray(on_paper(digit).round().astype(np.uint8))
    return _png(np.asarray(image.filter(ImageFilter.MinFilter(9))))


PHOTO_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "sensor noise": sensor_noise,
    "uneven light": uneven_light,
    "JPEG q15, tinted": tinted_jpeg,
    "rotated 5-12 deg": rotated,
    "small, off-centre": small_off_centre,
    "thick strokes": thick_strokes,
}


def mnist_split(folder: Path, start: int, stop: int):
    """MNIST test images ``start:stop`` as a ``Split`` (float32 in [0, 1], one-hot labels)."""
    from digits.data import idx
    from digits.data.arrays import Split

    images = idx.read_images(folder / "t10k-images-idx3-ubyte.gz")[start:stop]
    labels = idx.read_labels(folder / "t10k-labels-idx1-ubyte.gz")[start:stop]
    x = images[..., None].astype(np.float32) / 255.0
    return Split(x, np.eye(10, dtype=np.float32)[labels], tuple("0123456789"))


def train_on_mnist_test_images(folder: Path, steps: int = 500):
    """A CNN trained briefly on MNIST test images 1,000-9,999 (validation 500-999)."""
    from digits.model import training
    from digits.params import load_params, replace

    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    params = replace(
        params, conv1_filters=16, conv2_filters=36, fc_size=128, steps=steps,
        eval_every=steps, learning_rate=1e-3,
    )  # fmt: skip
    train, validation = mnist_split(folder, 1000, 10000), mnist_split(folder, 500, 1000)
    return training.train(params, train, validation).model


def agreement(model, digits: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Per kind, the fraction of (n, 28, 28) uint8 digits whose photo keeps the clean class."""
    from digits.serving.images import prepare_image

    clean = model.predict_on_batch(digits[..., None].astype(np.float32) / 255).argmax(axis=1)
    kept = {}
    for kind, make in PHOTO_KINDS.items():
        rng = np.random.default_rng(seed)
        prepared = np.stack([prepare_image(io.BytesIO(make(d, rng))) for d in digits])
        found = model.predict_on_batch(prepared[..., None]).argmax(axis=1)
        kept[kind] = float(np.mean(found == clean))
    return kept


def main(argv: list[str] | None = None) -> None:
    """Train, redraw ``--count`` digits per kind, print the agreement table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO_ROOT.parent / "shared/datasets/mnist")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    model = train_on_mnist_test_images(args.mnist)
    digits = np.round(mnist_split(args.mnist, 0, args.count).x[..., 0] * 255).astype(np.uint8)
    for kind, kept in agreement(model, digits).items():
        print(f"{kind:<20} {kept:6.1%} of {args.count}")


if __name__ == "__main__":
    sys.exit(main())
