"""Image files -> the training distribution: (28, 28) float32 in [0, 1], light on dark.

The steps follow how the datasets were made:

- grey (Pillow's ``L``; transparent pixels count as white paper);
- light content on a dark background: an image whose border is mostly light is inverted;
- the contrast stretched to 0..255 (a pencil photo's grey paper becomes black);
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
from PIL import Image, UnidentifiedImageError

from digits.errors import DataError

SIZE = 28
DIGIT_BOX = 20  # MNIST: "normalized to fit in a 20x20 pixel box"
MIN_SIDE = 8  # smaller images hold no recognisable digit or garment
CONTENT_LEVEL = 0.25  # after stretching: pixels above this fraction of white are content
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")  # the only Pillow plugins a user's file is offered to
MAX_PIXELS = 50_000_000  # width x height an image may declare: a 48-megapixel photo fits
WORK_SIDE = 1024  # pixels: larger images are reduced to about this before converting
# What Pillow raises on a damaged or truncated file, beyond OSError and ValueError.
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, struct.error)


class ImageError(DataError):
    """A file that cannot be made into a 28x28 input; the message says why."""


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
    low, high = int(grey.min()), int(grey.max())
    if high == low:
        raise ImageError("blank image: one grey level, nothing to recognise")
    stretched = (grey.astype(np.float32) - low) / (high - low)  # background ~0, content ~1
    rows = np.flatnonzero((stretched > CONTENT_LEVEL).any(axis=1))
    columns = np.flatnonzero((stretched > CONTENT_LEVEL).any(axis=0))
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
