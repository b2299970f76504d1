"""Visualize stage: learned filters, layer outputs, predictions and the model summary.

Writes one folder (``plots/visualize``) with predictable names::

    filters/<layer>_in<channel>.png   every filter of a conv layer for one input channel
    layers/<layer>_image<index>.png   a conv block's output (after pool and ReLU) for one image
    predictions.png                   the first nine test images, true and predicted labels
    model_summary.txt                 layers, output shapes, parameter counts
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from digits.data.arrays import Split
from digits.entry import run
from digits.errors import ParamsError
from digits.params import VisualizeParams
from digits.runtime import cli

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    import keras
    from matplotlib.figure import Figure

PREDICTION_COUNT = 9
# Made even when empty (a model without conv layers), so that `dvc plots show` finds the
# plot folders dvc.yaml names.
SUBFOLDERS = ("filters", "layers")


@dataclass(frozen=True)
class Plan:
    """What to draw, checked against the model and the test set before anything is drawn."""

    filters: tuple[tuple[str, int], ...]  # (conv layer, input channel)
    outputs: tuple[tuple[str, int], ...]  # (conv layer, test image index)
    notices: tuple[str, ...]  # pictures skipped, one line each


def make_plan(model: keras.Model, params: VisualizeParams, test_size: int) -> Plan:
    """Check ``params`` against ``model`` and the test set; list the pictures to draw.

    An input channel that only some conv layers have (conv1 has one) is skipped for the
    others with a notice; a channel no conv layer has, or an image index outside the test set,
    is an error. A model without conv layers gets a notice and no filter or output pictures.

    Raises:
        ParamsError: An image index or input channel is out of range.
    """
    from digits.model.networks import conv_layers

    for index in params.images:
        if index >= test_size:
            raise ParamsError(
                f"visualize.images: index {index} is out of range; the test set has "
                f"{test_size} images, so use 0 to {test_size - 1}"
            )
    images = tuple(dict.fromkeys(params.images))  # repeated indices would overwrite a file
    channels = tuple(dict.fromkeys(params.input_channels))
    inputs = {layer.name: layer.kernel.shape[2] for layer in conv_layers(model)}
    if not inputs:
        notice = (
            f"model {model.name!r} has no conv layers: filter and layer-output pictures skipped"
        )
        return Plan((), (), (notice,))
    widest = max(inputs, key=inputs.get)
    for channel in channels:
        if channel >= inputs[widest]:
            raise ParamsError(
                f"visualize.input_channels: channel {channel} is out of range; the widest conv "
                f"layer ({widest}) has {inputs[widest]} input channels, so use 0 to "
                f"{inputs[widest] - 1}"
            )
    filters, notices = [], []
    for name, count in inputs.items():
        filters += [(name, channel) for channel in channels if channel < count]
        skipped = [str(channel) for channel in channels if channel >= count]
        if skipped:
            notices.append(
                f"{name} has {count} input channel{'s' * (count > 1)}: "
                f"input channel{'s' * (len(skipped) > 1)} {', '.join(skipped)} skipped"
            )
    outputs = tuple((name, index) for name in inputs for index in images)
    return Plan(tuple(filters), outputs, tuple(notices))


def block_output(model: keras.Model, layer_name: str) -> keras.KerasTensor:
    """The output of a conv layer's block: the layer plus the pooling and ReLU that follow."""
    import keras

    layers = model.layers
    position = next(i for i, layer in enumerate(layers) if layer.name == layer_name)
    while position + 1 < len(layers) and isinstance(
        layers[position + 1], keras.layers.MaxPooling2D | keras.layers.ReLU
    ):
        position += 1
    return layers[position].output


def draw(model: keras.Model, split: Split, plan: Plan) -> Iterator[tuple[str, Figure | str]]:
    """Yield (file name inside the output folder, figure or text) for everything in ``plan``."""
    import keras
    import numpy as np

    from digits.figures.network import filters_figure, layer_output_figure, predictions_figure
    from digits.model.networks import model_summary

    yield "model_summary.txt", model_summary(model)
    logits = model.predict(split.x[:PREDICTION_COUNT], verbose=0)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    yield "predictions.png", predictions_figure(split, probabilities)
    for name, channel in plan.filters:
        kernel = model.get_layer(name).kernel.numpy()  # (height, width, in, out)
        yield f"filters/{name}_in{channel}.png", filters_figure(kernel, name, channel)
    if not plan.outputs:
        return
    layer_names = list(dict.fromkeys(name for name, _ in plan.outputs))
    images = sorted({index for _, index in plan.outputs})
    blocks = keras.Model(model.inputs, [block_output(model, name) for name in layer_names])
    results = blocks.predict(split.x[images], verbose=0)
    results = results if isinstance(results, list) else [results]  # one layer: no list
    # A bfloat16 model's layers output bfloat16, which matplotlib cannot scale: draw float32.
    results = [np.asarray(result, dtype=np.float32) for result in results]
    for name, index in plan.outputs:
        output = results[layer_names.index(name)][images.index(index)]  # (height, width, ch)
        label = split.class_names[split.labels[index]]
        title = f"{name} output after pool and ReLU, test image {index} ({label})"
        yield f"layers/{name}_image{index}.png", layer_output_figure(split.x[index], output, title)


def main(argv: list[str] | None = None) -> None:
    """Draw the pictures of ``--model`` on ``--test`` into the folder ``--out``."""
    parser = cli.stage_parser(__doc__)
    cli.add_model_and_test_options(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("plots/visualize"),
        help="folder for the pictures and the model summary, replaced whole",
    )
    args = parser.parse_args(argv)

    from digits.data.arrays import load_split
    from digits.figures.drawing import write_png
    from digits.model.networks import load_model
    from digits.params import load_params
    from digits.runtime.atomic import Outputs
    from digits.tracking import stage_run

    loaded = load_params(args.params, sections=("visualize", "tracking"))

    # The folder is drawn and logged, then swapped in; the run ends after (FAILED if not).
    outputs = Outputs()
    with stage_run.model_run(loaded.tracking, args.run, outputs) as run:
        model = load_model(args.model)
        split = load_split(args.test)
        plan = make_plan(model, loaded.visualize, len(split.x))
        for notice in plan.notices:
            print(f"notice: {notice}")
        with outputs.directory(args.out) as folder:
            for subfolder in SUBFOLDERS:
                (folder / subfolder).mkdir()
            for name, content in draw(model, split, plan):
                if isinstance(content, str):
                    (folder / name).write_text(content)
                else:
                    write_png(content, folder / name)
            count = sum(1 for path in folder.rglob("*") if path.is_file())
        run.log_params(loaded, ("visualize",))
        run.log_files(args.out, outputs=outputs)
    print(f"wrote {count} files to {args.out}")
    print(run)


if __name__ == "__main__":
    run(main)
