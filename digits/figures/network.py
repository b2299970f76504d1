"""Figures of a network's insides for the visualize stage: filters, layer outputs, predictions.

Grids are near-square; tiles shrink for wide layers so a grid of 1,024 filters stays a
readable page, not a poster.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from digits.data.arrays import Split
from digits.figures.drawing import image_grid

MAX_GRID_INCHES = 10.0
# Points: 8 pt is 11 px in a PNG saved at 100 dpi, readable at 100% zoom.
LABEL_POINTS = 8


def grid_shape(count: int) -> tuple[int, int, float]:
    """Rows and columns of a near-square grid of ``count`` tiles, and a tile's size in inches."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns, min(1.0, MAX_GRID_INCHES / columns)


def tiles(figure: Figure | SubFigure, count: int, titles: bool) -> list[Axes]:
    """``count`` axes in a near-square grid, ticks off, titled by index when ``titles``."""
    rows, columns, _ = grid_shape(count)
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for index, axis in enumerate(axes):
        axis.set_axis_off()
        if titles and index < count:
            axis.set_title(str(index), fontsize=LABEL_POINTS, pad=2)
    return axes[:count]


def filters_figure(kernel: np.ndarray, layer_name: str, channel: int) -> Figure:
    """Every filter of a conv layer for one input channel, on one symmetric colour scale.

    Args:
        kernel: The layer's weights, (height, width, input channels, filters).
        layer_name: For the title.
        channel: The input channel to draw.
    """
    weights = kernel[:, :, channel, :]  # (height, width, filters)
    count = weights.shape[-1]
    rows, columns, cell = grid_shape(count)
    figure = Figure(figsize=(cell * columns + 1.0, cell * rows + 0.6), layout="constrained")
    axes = tiles(figure, count, titles=count <= 64)
    limit = float(np.abs(weights).max()) or 1.0  # one scale for the grid: filters compare
    for index, axis in enumerate(axes):
        # Diverging map: red positive weights, blue negative, white zero.
        image = axis.imshow(weights[..., index], cmap="RdBu_r", vmin=-limit, vmax=limit)
    figure.colorbar(image, ax=axes, shrink=0.8, label="weight")
    height, width = weights.shape[:2]
    figure.suptitle(
        f"{layer_name}: {count} filters {height}x{width}, input channel {channel}", fontsize=10
    )
    return figure


def layer_output_figure(image: np.ndarray, output: np.ndarray, title: str) -> Figure:
    """The input image beside a grid of every channel of a layer's output.

    Args:
        image: (28, 28, 1) in [0, 1].
        output: (height, width, channels), >= 0 after ReLU; drawn on one shared scale.
        title: Figure title.
    """
    count = output.shape[-1]
    rows, columns, cell = grid_shape(count)
    grid_inches = (cell * columns, max(2.0, cell * rows))
    figure = Figure(figsize=(2.4 + grid_inches[0], grid_inches[1] + 0.6), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=[2.4, grid_inches[0]])
    axis = left.subplots()
    # The image as the dataset stores it: white is 1.0. Its own scale, apart from the grid's.
    pixels = axis.imshow(np.squeeze(image, -1), cmap="gray", vmin=0.0, vmax=1.0)
    axis.set_box_aspect(1)  # the axes box is the image, so the label sits on it
    axis.set_title("input image", fontsize=LABEL_POINTS + 1)
    axis.set_xticks([])
    axis.set_yticks([])
    left.colorbar(pixels, ax=axis, orientation="horizontal", shrink=0.8, label="pixel value")
    top = float(output.max()) or 1.0  # one scale for the grid: weak and dead channels show
    axes = tiles(right, count, titles=count <= 64)
    for index, axis in enumerate(axes):
        # Dark is zero (no response), bright the layer's strongest response.
        shown = axis.imshow(output[..., index], cmap="viridis", vmin=0.0, vmax=top)
    right.colorbar(shown, ax=axes, shrink=0.8, label="activation (after ReLU)")
    figure.suptitle(title, fontsize=10)
    return figure


def predictions_figure(split: Split, probabilities: np.ndarray) -> Figure:
    """A 3x3 grid of the first test images with true and predicted labels (wrong in red)."""
    names, labels = split.class_names, split.labels
    predicted = probabilities.argmax(axis=1)
    titles = [
        f"#{i} true: {names[labels[i]]}\npredicted: {names[p]} ({probabilities[i, p]:.0%})"
        for i, p in enumerate(predicted)
    ]
    title = "First test images: true and predicted labels (wrong in red)"
    figure = image_grid(split.x[: len(predicted)], titles, 3, title, cell_inches=2.0)
    for axis, label, guess in zip(figure.axes, labels, predicted, strict=False):
        axis.title.set_color("black" if label == guess else "red")
    return figure
