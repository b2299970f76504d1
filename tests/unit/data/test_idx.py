import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from helpers.paths import REPO_ROOT

from digits.data import idx
from digits.errors import DataError


@pytest.fixture
def images() -> np.ndarray:
    return np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)


def test_round_trip_of_images_and_labels_through_gzip(tmp_path, images):
    labels = np.array([0, 9, 4], dtype=np.uint8)
    (tmp_path / "images.gz").write_bytes(gzip.compress(idx.encode(images)))
    (tmp_path / "labels").write_bytes(idx.encode(labels))

    np.testing.assert_array_equal(idx.read_images(tmp_path / "images.gz"), images)
    np.testing.assert_array_equal(idx.read_labels(tmp_path / "labels"), labels)


def test_header_is_big_endian_with_the_documented_magic(images):
    data = idx.encode(images)
    assert struct.unpack(">4I", data[:16]) == (2051, 3, 28, 28)
    assert struct.unpack(">2I", idx.encode(np.zeros(5, np.uint8))[:8]) == (2049, 5)


def test_bad_magic_names_the_file(tmp_path, images):
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x09\x03" + idx.encode(images)[4:])
    with pytest.raises(DataError, match=r"images: magic number 2307 is not 2051"):
        idx.read_images(path)


def test_label_file_in_place_of_images_is_named_as_such(tmp_path):
    path = tmp_path / "train-images"
    path.write_bytes(idx.encode(np.zeros(4, np.uint8)))
    with pytest.raises(
        DataError, match=r"train-images: .*this is a label file; check that the image and label"
    ):
        idx.read_images(path)


def test_wrong_dimension_count(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">I2I", 2050, 2, 2) + bytes(4))
    with pytest.raises(DataError, match="declares 2 dimensions; an IDX image file has 3"):
        idx.read_images(path)


def test_truncated_payload(tmp_path, images):
    path = tmp_path / "images"
    path.write_bytes(idx.encode(images)[:-1])
    with pytest.raises(DataError, match=r"images: payload truncated: header \(3, 28, 28\)"):
        idx.read_images(path)


def test_count_in_header_larger_than_data(tmp_path, images):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">4I", 2051, 4, 28, 28) + idx.encode(images)[16:])
    with pytest.raises(DataError, match="payload truncated"):
        idx.read_images(path)


def test_trailing_bytes(tmp_path, images):
    path = tmp_path / "images"
    path.write_bytes(idx.encode(images) + b"\x00")
    with pytest.raises(DataError, match="has trailing bytes"):
        idx.read_images(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">2I", 2051, 3))
    with pytest.raises(DataError, match="header is truncated"):
        idx.read_images(path)


def test_label_out_of_range_names_value_and_index(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx.encode(np.array([1, 2, 10, 3], np.uint8)))
    with pytest.raises(DataError, match=r"labels: label 10 at index 2 is outside 0..9"):
        idx.read_labels(path)


def test_damaged_gzip_names_the_file(tmp_path, images):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx.encode(images))[:-20])
    with pytest.raises(DataError, match=r"images.gz: damaged gzip data"):
        idx.read_images(path)


def test_missing_file_says_to_download(tmp_path):
    with pytest.raises(DataError, match="not found: run the download stage"):
        idx.read_images(tmp_path / "absent.gz")


def test_checks_hold_under_python_optimize(tmp_path, images):
    """``python -O`` strips asserts; the reader must still refuse a bad file."""
    path = tmp_path / "images"
    path.write_bytes(idx.encode(images)[:-5])
    code = f"from digits.data import idx; idx.read_images({str(path)!r})"
    repo_root = REPO_ROOT
    result = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo_root)},
    )  # fmt: skip
    assert result.returncode != 0
    assert "DataError" in result.stderr and "payload truncated" in result.stderr
