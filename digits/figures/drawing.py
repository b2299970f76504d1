"""Matplotlib figures shared by the stages, drawn without pyplot (no GUI backend needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from digits.runtime.atomic import atomic_path


def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    columns: int,
    title: str = "",
    cell_inches: float = 1.4,
) -> Figure:
    """A grid of grey-scale images with a small title each, drawn as the dataset stores them
    (1.0 white, 0.0 black: light digits and clothes on a dark background).

    Args:
        images: (n, height, width) or (n, height, width, 1), values in [0, 1].
        titles: One title per image.
        columns: Images per row.
        title: Figure title.
        cell_inches: Width and height of one cell.
    """
    count = len(images)
    rows = max(1, math.ceil(count / columns))
    figure = Figure(
        figsize=(columns * cell_inches, rows * cell_inches + 0.4), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < count:
            axis.imshow(np.squeeze(images[index]), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_title(titles[index], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


# Matplotlib writes only its name and version into a PNG (no time); named here so that the
# bytes stay the same whatever its defaults become.
PNG_METADATA = {"Software": "matplotlib"}


def write_png(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` as PNG; the same figure always gives the same bytes."""
    figure.savefig(path, dpi=dpi, format="png", metadata=PNG_METADATA)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save ``figure`` as PNG, atomically."""
    with atomic_path(path) as temporary:
        write_png(figure, temporary, dpi)
