"""Preprocess stage: IDX files to normalised, one-hot, split arrays.

Train images are split into train and validation (seeded, stable); the test set is written
apart and only the evaluate and visualize stages read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits.data import idx
from digits.data.arrays import save_split
from digits.data.catalog import (
    DEFAULT_CATALOG,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    load_dataset,
)
from digits.data.shapes import IMAGE_SHAPE, NUM_CLASSES
from digits.entry import run
from digits.errors import DataError, ParamsError
from digits.params import load_params
from digits.runtime import cli
from digits.runtime.atomic import Outputs


def load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files.

    Returns:
        Images (n, 28, 28) uint8 and labels (n,) uint8.
    """
    images = idx.read_images(images_path)
    labels = idx.read_labels(labels_path)
    if images.shape[1:] != IMAGE_SHAPE[:2]:
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
            "labels; the two files must come from the same dataset and split"
        )
    return images, labels


def normalise(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 28, 28, 1) float32 in [0, 1]."""
    return (images.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """(n,) ints in 0..9 -> (n, 10) float32."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def split_indices(count: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(count)`` with ``seed`` and cut off ``validation_size`` indices.

    Returns:
        Sorted train indices and sorted validation indices.
    """
    if validation_size >= count:
        raise ParamsError(
            f"data.validation_size: {validation_size} leaves no training images; the training "
            f"set has {count}, so use at most {count - 1}"
        )
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])


def class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    """Images per class, keyed by class name."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {name: int(count) for name, count in zip(class_names, counts, strict=True)}


def main(argv: list[str] | None = None) -> None:
    """Read the raw IDX files in ``--raw``; write the three splits, their sizes and counts."""
    parser = cli.stage_parser(__doc__)
    cli.add_catalog_option(parser, DEFAULT_CATALOG)
    parser.add_argument(
        "--raw", type=Path, default=Path("data/raw"), help="folder of the downloaded IDX files"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/processed"),
        help="folder for train.npz, validation.npz and test.npz",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("metrics/data.json"),
        help="DVC metrics file: the number of images in each split",
    )
    parser.add_argument(
        "--counts",
        type=Path,
        default=Path("metrics/class_counts.json"),
        help="images per class in each split (JSON)",
    )
    args = parser.parse_args(argv)
    params = load_params(args.params, sections=("data",)).data
    class_names = load_dataset(params.dataset, args.catalog).class_names

    train_images, train_labels = load_pair(args.raw / TRAIN_IMAGES, args.raw / TRAIN_LABELS)
    test_images, test_labels = load_pair(args.raw / TEST_IMAGES, args.raw / TEST_LABELS)
    train_index, validation_index = split_indices(
        len(train_images), params.validation_size, params.seed
    )
    splits = {
        "train": (train_images[train_index], train_labels[train_index]),
        "validation": (train_images[validation_index], train_labels[validation_index]),
        "test": (test_images, test_labels),
    }
    sizes, counts = {}, {}
    with Outputs() as outputs:  # the splits, their sizes and counts are swapped in together
        for name, (images, labels) in splits.items():
            path = args.out / f"{name}.npz"
            save_split(path, normalise(images), one_hot(labels), class_names, outputs)
            sizes[f"{name}_images"] = len(labels)
            counts[name] = class_counts(labels, class_names)
        outputs.write_json(args.metrics, sizes)
        outputs.write_json(args.counts, counts)
    for name, (_, labels) in splits.items():
        print(f"{name}: {len(labels)} images -> {args.out / f'{name}.npz'}")


if __name__ == "__main__":
    run(main, tensorflow=False)
