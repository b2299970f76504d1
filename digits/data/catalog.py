"""The dataset catalog (datasets.yaml): file names, checksums, mirrors and class names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from digits.data.shapes import NUM_CLASSES
from digits.errors import ParamsError
from digits.params import read_yaml

DEFAULT_CATALOG = Path("datasets.yaml")
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteFile:
    """One IDX ``.gz`` file, the hashes that verify it (compressed or decompressed), and the
    size of its decompressed content, which bounds what the download stage reads."""

    name: str
    gz_sha256: str
    payload_sha256: str | None
    payload_bytes: int


@dataclass(frozen=True)
class Dataset:
    """A dataset in the MNIST layout: four IDX files, ten classes."""

    name: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


def load_dataset(name: str, catalog: str | os.PathLike[str] = DEFAULT_CATALOG) -> Dataset:
    """Return the entry ``name`` of the catalog, checked.

    Raises:
        ParamsError: ``name`` is not in the catalog (the message lists those that are) or the
            entry is malformed.
    """
    entries = read_yaml(catalog)
    if name not in entries:
        raise ParamsError(
            f"data.dataset: {name!r} is not in {catalog}; choose one of {', '.join(entries)}"
        )
    entry = entries[name]
    where = f"{catalog}: {name}"
    try:
        files = tuple(
            RemoteFile(
                file_name,
                entry["files"][file_name]["gz_sha256"],
                entry["files"][file_name]["payload_sha256"],
                entry["files"][file_name]["payload_bytes"],
            )
            for file_name in FILE_NAMES
        )
        dataset = Dataset(name, files, tuple(entry["mirrors"]), tuple(entry["class_names"]))
    except (KeyError, TypeError) as error:
        raise ParamsError(f"{where}: missing or malformed entry {error}") from None
    if len(dataset.class_names) != NUM_CLASSES:
        raise ParamsError(f"{where}: class_names must list {NUM_CLASSES} names")
    for remote in files:
        size = remote.payload_bytes
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ParamsError(f"{where}: {remote.name}: payload_bytes must be a positive integer")
        for digest in (remote.gz_sha256, remote.payload_sha256):
            if digest is not None and not _SHA256.fullmatch(str(digest)):
                raise ParamsError(f"{where}: {remote.name}: {digest!r} is not a sha256 digest")
    return dataset
