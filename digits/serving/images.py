"""Image files -> the training distribution: (28, 28) float32 in [0, 1], light on dark.

The steps follow how the datasets were made:

- grey (Pillow's ``L``; transparent pixels count as white paper);
- light content on a dark background: an image whose border is mostly light is inverted;
- photos made even: a 3x3 median takes out sensor noise, and (digits) the paper's uneven
  light, a smooth surface fitted to the background, is divided out (``_denoised``);
- content is what lies above Otsu's threshold, chosen from the image's own histogram; the
  background, with what spread the noise left it, goes to 0 and the brightest ink to 1 (a
  pencil photo's grey paper becomes black);
- digits (MNIST): the content's bounding box fitted into 20x20 keeping its aspect, then
  placed in 28x28 so that its centre of mass is at the centre;
- garments (Fashion-MNIST, which was made by trimming, fitting the longest side into 28 and
  centring the box): the bounding box fitted into 28x28 and centred.

A 28x28 image is taken to be in the training format already: it is only made grey and, on a
light background, inverted (so a test image written as PNG predicts exactly as in memory).
Resampling is Pillow's (Lanczos for shrinking, as an antialiasing filter).

Files come from users, so opening one is bounded: only PNG and JPEG are opened (no other
Pillow plugin, e.g. EPS, which hands the file to Ghostscript, is tried); an image declaring more
than ``MAX_PIXELS`` pixels is refused from its header, before any pixel is decoded; a JPEG is
decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 scale that keeps it at least ``WORK_SIDE``
pixels a side (``Image.draft``), and any image over ``WORK_SIDE`` pixels a side is box-reduced
to about that (``Image.reduce``) before it is converted, so a photo from a phone costs little.
``prepare_image`` is the one function from a file (a path or an open binary file) to the
network's input.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from digits.errors import DataError

SIZE = 28
DIGIT_BOX = 20  # MNIST: "normalized to fit in a 20x20 pixel box"
MIN_SIDE = 8  # smaller images hold no recognisable digit or garment
DENOISE_SIDE = 64  # pixels: smaller images are not median-filtered
BACKGROUND_SIDE = 64  # pixels: the long side of the copy the background light is fitted on
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")  # the only Pillow plugins a user's file is offered to
MAX_PIXELS = 50_000_000  # width x height an image may declare: a 48-megapixel photo fits
WORK_SIDE = 1024  # pixels: larger images are reduced to about this before converting
# What Pillow raises on a damaged or truncated file, beyond OSError and ValueError.
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, struct.error)


class ImageError(DataError):
    """A file that cannot be made into a 28x28 input; the message says why."""


def style_of(dataset: str) -> str:
    """The preparation a dataset's images get: ``garments`` for Fashion-MNIST, else ``digits``."""
    return "garments" if dataset == "fashion-mnist" else "digits"


def prepare_image(source: str | os.PathLike[str] | BinaryIO, style: str = "digits") -> np.ndarray:
    """An image file as the network's input, (28, 28) float32 in [0, 1], light on dark.

    Args:
        source: A path, or a binary file open for reading (e.g. a request body's bytes in
            ``io.BytesIO``).
        style: ``digits`` or ``garments`` (``to_training_format``).

    Raises:
        ImageError: The file cannot be made into an input; the message says why.
    """
    return to_training_format(read_image(source), style)


def read_image(source: str | os.PathLike[str] | BinaryIO) -> Image.Image:
    """Open ``source`` (a PNG or JPEG file) as a grey ``L`` image, transparent pixels on white,
    reduced to about ``WORK_SIDE`` pixels a side when larger.

    Raises:
        ImageError: Missing, empty, not PNG or JPEG, declaring more than ``MAX_PIXELS``
            pixels, damaged, or smaller than 8x8.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise ImageError("not found")
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError("empty file")
    try:
        # Pillow warns past its own pixel limit, above MAX_PIXELS, which refuses such an image
        # below; it raises past twice that limit, before the header's size is known here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{width}x{height} is more than the {MAX_PIXELS:,} pixels an image "
                        "may have; scale it down first"
                    )
                if image.format == "JPEG":
                    image.draft("L", (WORK_SIDE, WORK_SIDE))  # decode at a fraction of the size
                image.load()
                grey = _grey(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a PNG or JPEG image") from None
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"more pixels than an image may have ({error}); the limit is {MAX_PIXELS:,}"
        ) from None
    except IsADirectoryError:
        raise ImageError("a folder, not an image file") from None
    except _DAMAGED as error:
        raise ImageError(f"damaged image ({error})") from None
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{width}x{height} pixels is too small; need at least {MIN_SIDE}x{MIN_SIDE}"
        )
    return grey


def _grey(image: Image.Image) -> Image.Image:
    """A decoded image as ``L``, box-reduced to about ``WORK_SIDE`` a side, on white paper."""
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if transparent and image.mode not in ("RGBA", "LA"):
        image = image.convert("RGBA")  # applies a palette's or a tRNS chunk's transparency
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    factor = -(-max(image.size) // WORK_SIDE)  # ceiling
    if factor > 1:
        image = image.reduce(factor)
    if transparent:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return image.convert("L")


def light_background(grey: np.ndarray) -> bool:
    """Whether the border of a (h, w) uint8 image is mostly light (dark content on paper)."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border)) > 127


def to_training_format(image: Image.Image, style: str = "digits") -> np.ndarray:
    """A grey image as the network's input: (28, 28) float32 in [0, 1], light on dark.

    Args:
        image: A Pillow ``L`` image (``read_image``).
        style: ``digits`` (20x20 box, centred by centre of mass) or ``garments`` (28x28
            box, centred by its bounding box).

    Raises:
        ImageError: The image is blank (one grey level): there is nothing to recognise.
    """
    grey = np.asarray(image, dtype=np.uint8)
    if light_background(grey):
        grey = 255 - grey
    if grey.shape == (SIZE, SIZE):
        return grey.astype(np.float32) / 255.0
    if int(grey.min()) == int(grey.max()):
        raise ImageError("blank image: one grey level, nothing to recognise")
    values = np.asarray(_denoised(grey, style), dtype=np.float32)
    level = otsu_threshold(values)
    rows = np.flatnonzero((values > level).any(axis=1))
    columns = np.flatnonzero((values > level).any(axis=0))
    # Background at 0, the brightest content at 1: the background's own spread (what noise
    # the median left) is cut off with it, so it does not grey the canvas.
    background = values[values <= level]
    low = min(level, float(background.mean() + 3 * background.std()))
    stretched = np.clip((values - low) / (float(values.max()) - low), 0.0, 1.0)
    content = stretched[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    box = DIGIT_BOX if style == "digits" else SIZE
    fitted = _fit(content, box)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    height, width = fitted.shape
    if style == "digits":
        # Shift so that the centre of mass lands on the canvas centre, as MNIST did.
        total = fitted.sum()
        centre_row = (fitted.sum(axis=1) @ np.arange(height)) / total
        centre_column = (fitted.sum(axis=0) @ np.arange(width)) / total
        top = round((SIZE - 1) / 2 - centre_row)
        left = round((SIZE - 1) / 2 - centre_column)
        top = min(max(top, 0), SIZE - height)
        left = min(max(left, 0), SIZE - width)
    else:
        top, left = (SIZE - height) // 2, (SIZE - width) // 2
    canvas[top : top + height, left : left + width] = fitted
    return canvas


def _denoised(grey: np.ndarray, style: str) -> Image.Image:
    """A light-on-dark (h, w) uint8 image with sensor noise and uneven light taken out.

    A 3x3 median removes single-pixel noise (on images of at least ``DENOISE_SIDE`` pixels a
    side: on smaller ones it would eat thin strokes). For digits, the background's light is a
    smooth surface (quadratic in x and y) fitted to the pixels under Otsu's threshold on a
    copy ``BACKGROUND_SIDE`` pixels long, so strokes of any width leave it; each pixel is then
    taken relative to it, as ink is a fraction of the light falling on the paper. Garments
    fill their image and keep their light.
    """
    image = Image.fromarray(grey)
    if min(grey.shape) >= DENOISE_SIDE:
        image = image.filter(ImageFilter.MedianFilter(3))
    if style != "digits":
        return image
    height, width = grey.shape
    scale = BACKGROUND_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(image.resize(size, Image.Resampling.BOX), np.float64)
    paper = small <= otsu_threshold(small)
    terms = _surface_terms(*small.shape)[paper]  # least squares by its normal equations
    c = np.linalg.lstsq(terms.T @ terms, terms.T @ small[paper], rcond=None)[0]
    rows, columns = np.ogrid[0:height, 0:width]
    y, x = rows / max(height - 1, 1) - 0.5, columns / max(width - 1, 1) - 0.5
    light = c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y  # (h, w)
    flat = (np.asarray(image, np.float64) - light) * 255 / np.maximum(255 - light, 1)
    return Image.fromarray(np.clip(flat, 0, 255).astype(np.uint8))


def _surface_terms(height: int, width: int) -> np.ndarray:
    """(height, width, 6): 1, x, y, x², xy, y² at each pixel, x and y from -0.5 to 0.5."""
    rows, columns = np.mgrid[0:height, 0:width]
    y = rows / max(height - 1, 1) - 0.5
    x = columns / max(width - 1, 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of (h, w) grey levels in 0..255: the level that splits the histogram
    into two classes of least spread within each (scikit-image's ``threshold_otsu``, which
    the project does not otherwise need)."""
    counts = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(counts)[:-1]
    weight_high = counts.sum() - weight_low
    sum_low = np.cumsum(counts * levels)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] + counts[-1] * 255.0 - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.nanargmax(between))


def _fit(content: np.ndarray, box: int) -> np.ndarray:
    """Resize (h, w) values in [0, 1] so the longer side is ``box`` pixels, aspect kept."""
    height, width = content.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (w, h)
    resized = Image.fromarray(content).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def image_files(paths: list[str]) -> list[Path]:
    """The files to predict: each named path, and the image files inside named folders.

    Folders are listed in name order, their PNG and JPEG files only; a named path is kept
    whatever it is, so that what is wrong with it is reported.
    """
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(
                child
                for child in path.rglob("*")
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(path)
    return found
