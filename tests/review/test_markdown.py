"""Which way metrics should move, and how the report prints numbers."""

import pytest

from review.dvcdata import Change
from review.markdown import BETTER, WORSE, direction, numbers, table, verdict


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("loss", -1),
        ("val_loss", -1),
        ("accuracy", 1),
        ("per_class.Coat.f1-score", 1),
        ("macro_f1", 1),
        ("per_class.Bag.precision", 1),
        ("per_class.Bag.recall", 1),
        ("training_seconds", 0),
        ("images_per_second", 0),
        ("parameters", 0),
        ("test.class_counts.Sneaker", 0),
    ],
)
def test_direction_by_the_last_part_of_the_key(key, expected):
    assert direction(key) == expected


def change(key, old, new):
    return Change("metrics/eval.json", key, old, new, None if old is None else new - old)


def test_verdicts():
    assert verdict(change("loss", 0.30, 0.35)) == WORSE
    assert verdict(change("loss", 0.30, 0.25)) == BETTER
    assert verdict(change("accuracy", 0.9, 0.8)) == WORSE
    assert verdict(change("training_seconds", 10.0, 99.0)) == ""  # not judged
    assert verdict(change("accuracy", 0.9, 0.9 - 1e-5)) == ""  # below the printed precision
    assert verdict(change("accuracy", None, 0.9)) == ""  # nothing to compare against


def test_numbers_share_one_precision_per_row():
    assert numbers(change("accuracy", 0.9, 0.8)) == ("0.9000", "0.8000", "-0.1000")
    assert numbers(change("training_seconds", 10.0, 12.5)) == ("10.0", "12.5", "+2.5")
    assert numbers(change("parameters", 242062, 469262)) == ("242,062", "469,262", "+227,200")
    assert numbers(change("accuracy", None, 0.8)) == ("—", "0.8000", "—")


def test_table_alignment_and_empty_table():
    assert table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|--:|\n| 1 | 2 |"
    assert table(["a", "b"], []) == ""
