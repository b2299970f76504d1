"""The report's pictures: confusion counts in class order, one panel per revision plus the
difference, one line per revision and field."""

import numpy as np
import pandas as pd

from review.dvcdata import Curve
from review.figures import confusion_counts, confusion_figure, curve_figure


def test_confusion_counts_follow_the_given_class_order():
    rows = pd.DataFrame({"actual": ["b", "b", "a", "c"], "predicted": ["b", "a", "a", "b"]})
    counts = confusion_counts(rows, ["c", "b", "a"])
    assert counts.tolist() == [[0, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_two_revisions_get_a_third_panel_with_the_signed_difference():
    old = np.array([[5, 1], [2, 4]])
    new = np.array([[6, 0], [2, 4]])
    figure = confusion_figure({"main": old, "workspace": new}, ["a", "b"])
    axes = figure.get_axes()
    assert [axis.get_title().split(" ")[0] for axis in axes] == ["main", "workspace", "Change"]
    labels = {text.get_text() for text in axes[2].texts}
    assert labels == {"+1", "-1"}  # zeros are left blank
    assert len(confusion_figure({"workspace": new}, ["a", "b"]).get_axes()) == 1


def test_curves_overlay_every_revision_and_field():
    points = pd.DataFrame({
        "rev": ["main"] * 4 + ["workspace"] * 4,
        "field": ["train_loss", "train_loss", "val_loss", "val_loss"] * 2,
        "x": [10.0, 20.0] * 4,
        "y": [1.0, 0.5, 1.2, 0.7, 0.9, 0.4, 1.1, 0.6],
    })  # fmt: skip
    figure = curve_figure(Curve("loss", "Loss", "step", points), ["main", "workspace"])
    lines = figure.get_axes()[0].get_lines()
    assert [line.get_label() for line in lines] == [
        f"{rev}: {field}" for rev in ("main", "workspace") for field in ("train_loss", "val_loss")
    ]
    assert lines[3].get_ydata().tolist() == [1.1, 0.6]
