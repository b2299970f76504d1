"""Strict reader and writer of the IDX format used by MNIST and Fashion-MNIST.

IDX: a big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim`` uint32 sizes, then the
payload. Images are ``2051`` (ubyte, 3 dims: count, rows, cols), labels ``2049`` (ubyte, 1
dim). Every deviation (wrong magic, short or long payload, broken gzip) raises ``DataError``
naming the file; checks use ``raise``, so they hold under ``python -O``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from digits.data.shapes import NUM_CLASSES
from digits.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX image file (``.gz`` or raw).

    Returns:
        (count, rows, cols) uint8.
    """
    return parse(read_bytes(path), IMAGES_MAGIC, str(path))


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX label file (``.gz`` or raw) whose labels must lie in 0..9.

    Returns:
        (count,) uint8.
    """
    labels = parse(read_bytes(path), LABELS_MAGIC, str(path))
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        index = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(
            f"{path}: label {int(labels[index])} at index {index} is outside 0..{NUM_CLASSES - 1}"
        )
    return labels


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the decompressed content of ``path`` (gzip is detected by its magic bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the download stage first") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: damaged gzip data ({error}); delete it and download again"
        ) from None


def parse(data: bytes, magic: int, source: str) -> np.ndarray:
    """Parse IDX bytes, insisting on ``magic`` and an exact payload length.

    Args:
        data: The decompressed file content.
        magic: ``IMAGES_MAGIC`` or ``LABELS_MAGIC``.
        source: The file name, for error messages.

    Returns:
        A uint8 array shaped by the header.
    """
    kind = {IMAGES_MAGIC: "image", LABELS_MAGIC: "label"}[magic]
    if len(data) < 4:
        raise DataError(f"{source}: {len(data)} bytes is too short for an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    swapped = {IMAGES_MAGIC: "an image file", LABELS_MAGIC: "a label file"}
    if found != magic and found in swapped:
        raise DataError(
            f"{source}: magic number {found} is not {magic}, the IDX {kind} magic: this is "
            f"{swapped[found]}; check that the image and label files are not swapped"
        )
    if found != magic and found >> 8 == magic >> 8:
        raise DataError(
            f"{source}: header declares {found & 0xFF} dimensions; an IDX {kind} file has "
            f"{magic & 0xFF}"
        )
    if found != magic:
        raise DataError(
            f"{source}: magic number {found} is not {magic}, the IDX {kind} magic; "
            "check that the right file is in this place"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: header is truncated ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{source}: payload {problem}: header {shape} needs {expected} bytes, "
            f"file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def encode(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 or 3 dimensions as IDX bytes (labels or images)."""
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(
            f"IDX encode needs a uint8 array of 1 or 3 dims, got {array.dtype} "
            f"with {array.ndim} dims"
        )
    magic = LABELS_MAGIC if array.ndim == 1 else IMAGES_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_gz_files(
    folder: Path, arrays: dict[str, np.ndarray], compresslevel: int = 9
) -> dict[str, dict[str, str]]:
    """Write each array as a gzipped IDX file ``folder/<name>``, as a dataset mirror holds them.

    Args:
        folder: Created if missing.
        arrays: File name (``train-images-idx3-ubyte.gz``, ...) to a uint8 array for ``encode``.
        compresslevel: gzip level; 1 is fast for large generated data.

    Returns:
        The ``files`` mapping of a datasets.yaml entry: each name's ``gz_sha256``,
        ``payload_sha256`` and ``payload_bytes``, so the download stage verifies what was
        written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in arrays.items():
        payload = encode(array)
        compressed = gzip.compress(payload, compresslevel=compresslevel, mtime=0)
        (folder / name).write_bytes(compressed)
        files[name] = {
            "gz_sha256": hashlib.sha256(compressed).hexdigest(),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "payload_bytes": len(payload),
        }
    return files
