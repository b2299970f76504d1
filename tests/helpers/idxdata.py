"""Tiny synthetic datasets in the MNIST layout, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits.data import idx
from digits.data.arrays import Split, save_split
from digits.data.catalog import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS


def make_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """(n, 28, 28) uint8 images a small network can learn: class k lights up row band k."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images


CLASS_NAMES = tuple(f"class{k}" for k in range(10))


def tiny_split(count: int, seed: int) -> Split:
    """A processed split of ``count`` images, classes in turn: what preprocess would write."""
    labels = np.arange(count) % 10
    images = make_images(labels, seed).astype(np.float32)[..., None] / 255.0
    return Split(images, np.eye(10, dtype=np.float32)[labels], CLASS_NAMES)


def write_tiny_splits(folder: Path) -> Path:
    """``train.npz`` (40 images) and ``validation.npz`` (10) in ``folder``, as preprocess writes
    them: the data of a train stage run on its own. Returns ``folder``."""
    for name, count, seed in [("train", 40, 1), ("validation", 10, 2)]:
        split = tiny_split(count, seed)
        save_split(folder / f"{name}.npz", split.x, split.y, CLASS_NAMES)
    return folder


def write_dataset(folder: Path, train_count: int = 120, test_count: int = 40, seed: int = 0):
    """Write the four ``.gz`` IDX files into ``folder``.

    Returns:
        A datasets.yaml entry (mapping) whose checksums match the written files.
    """
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(train_count) % 10).astype(np.uint8)
    test_labels = rng.permutation(np.arange(test_count) % 10).astype(np.uint8)
    files = idx.write_gz_files(
        folder,
        {
            TRAIN_IMAGES: make_images(train_labels, seed + 1),
            TRAIN_LABELS: train_labels,
            TEST_IMAGES: make_images(test_labels, seed + 2),
            TEST_LABELS: test_labels,
        },
    )
    return {"mirrors": [], "class_names": list(CLASS_NAMES), "files": files}
