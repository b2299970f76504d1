import numpy as np
import pytest
from helpers.idxdata import write_dataset

from digits.data.arrays import load_split
from digits.data.catalog import TRAIN_LABELS
from digits.errors import DataError, ParamsError
from digits.runtime.atomic import write_json
from stages import preprocess


@pytest.fixture
def processed(tmp_path, tiny_mirror):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  dataset: tiny\n  validation_size: 20\n  seed: 3\n")
    args = [
        "--params", str(params), "--catalog", str(tiny_mirror.catalog),
        "--raw", str(tiny_mirror.folder), "--out", str(tmp_path / "processed"),
        "--metrics", str(tmp_path / "data.json"),
        "--counts", str(tmp_path / "class_counts.json"),
    ]  # fmt: skip
    preprocess.main(args)
    return tmp_path, args


def test_shapes_dtypes_range_and_one_hot(processed):
    out, _ = processed
    for name, size in [("train", 100), ("validation", 20), ("test", 40)]:
        split = load_split(out / "processed" / f"{name}.npz")
        assert split.x.shape == (size, 28, 28, 1) and split.x.dtype == np.float32
        assert split.y.shape == (size, 10) and split.y.dtype == np.float32
        assert split.x.min() >= 0.0 and split.x.max() == 1.0
        np.testing.assert_array_equal(split.y.sum(axis=1), np.ones(size))
        assert set(np.unique(split.y)) == {0.0, 1.0}
        assert split.class_names[3] == "class3"


def test_labels_survive_normalisation_and_split(processed, tiny_mirror):
    out, _ = processed
    from digits.data import idx

    images = idx.read_images(tiny_mirror.folder / "train-images-idx3-ubyte.gz")
    labels = idx.read_labels(tiny_mirror.folder / TRAIN_LABELS)
    train_index, validation_index = preprocess.split_indices(120, 20, seed=3)
    validation = load_split(out / "processed" / "validation.npz")
    np.testing.assert_array_equal(validation.labels, labels[validation_index])
    np.testing.assert_allclose(validation.x[..., 0], images[validation_index] / 255.0, atol=1e-7)
    assert set(train_index).isdisjoint(validation_index)
    assert len(set(train_index) | set(validation_index)) == 120


def test_split_is_the_same_on_rerun_and_changes_with_the_seed():
    first = preprocess.split_indices(1000, 100, seed=7)
    again = preprocess.split_indices(1000, 100, seed=7)
    other = preprocess.split_indices(1000, 100, seed=8)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_summary_metrics_and_class_counts(processed):
    out, _ = processed
    import json

    summary = json.loads((out / "data.json").read_text())
    # Only the sizes are DVC metrics: one `dvc exp show` column each.
    assert summary == {"train_images": 100, "validation_images": 20, "test_images": 40}
    counts = json.loads((out / "class_counts.json").read_text())
    assert counts["test"] == {f"class{k}": 4 for k in range(10)}
    assert sum(counts["train"].values()) == 100
    assert all(
        counts["train"][f"class{k}"] + counts["validation"][f"class{k}"] == 12 for k in range(10)
    )


def test_validation_size_must_leave_training_images():
    with pytest.raises(ParamsError, match=r"data.validation_size: 120 leaves no training"):
        preprocess.split_indices(120, 120, seed=0)


def test_label_count_mismatch_names_both_files(tmp_path):
    write_dataset(tmp_path / "a", train_count=30)
    write_dataset(tmp_path / "b", train_count=29)
    with pytest.raises(DataError, match=r"has 30 images but .*b/train-labels.* has 29 labels"):
        preprocess.load_pair(
            tmp_path / "a" / "train-images-idx3-ubyte.gz", tmp_path / "b" / TRAIN_LABELS
        )


def test_failure_keeps_previous_outputs(processed, tiny_mirror):
    out, args = processed
    before = (out / "processed" / "test.npz").read_bytes()
    write_json(out / "params.yaml", {"data": {"dataset": "tiny", "validation_size": 500,
                                               "seed": 0}})  # fmt: skip
    with pytest.raises(ParamsError):
        preprocess.main(args)
    assert (out / "processed" / "test.npz").read_bytes() == before
    assert sorted(p.name for p in (out / "processed").iterdir()) == [
        "test.npz", "train.npz", "validation.npz"
    ]  # fmt: skip
