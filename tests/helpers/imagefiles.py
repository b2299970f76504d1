"""Image files a user could pass to digits-predict, written by the tests themselves: valid
ones, and ones made to cost memory, time or a program run."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """An 8-bit grey PNG of ``width`` x ``height``: black, with a white vertical bar in the
    middle third (a "1"), compressed row by row so that a large one needs no large array.

    ``rows``: write only this many rows of image data (a file that declares more than it
    holds, as a decompression bomb's header does); default all.
    """
    dark = b"\x00" + bytes(width)
    bar = bytearray(dark)
    bar[1 + width * 9 // 20 : 1 + width * 11 // 20] = b"\xff" * (
        width * 11 // 20 - width * 9 // 20
    )
    compressor = zlib.compressobj(1)
    data = []
    for row in range(height if rows is None else rows):
        data.append(
            compressor.compress(bytes(bar) if height // 5 <= row < height * 4 // 5 else dark)
        )
    data.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    with path.open("wb") as stream:
        stream.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header))
        stream.write(_chunk(b"IDAT", b"".join(data)) + _chunk(b"IEND", b""))
    return path


def digit_jpeg(path: Path, width: int, height: int) -> Path:
    """A colour JPEG photo-sized picture of a dark bar on light paper (a "1")."""
    image = Image.new("RGB", (width, height), (235, 230, 220))
    image.paste((20, 20, 30), (width * 9 // 20, height // 5, width * 11 // 20, height * 4 // 5))
    image.save(path, quality=85)
    return path


def small_digit_png(path: Path) -> Path:
    """A 28x28 PNG in the training format: a white bar on black."""
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    Image.fromarray(image).save(path)
    return path


POSTSCRIPT = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 100 100
%%EndComments
newpath 10 10 moveto 90 90 lineto stroke
showpage
%%EOF
"""
