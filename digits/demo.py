"""A page to draw a digit on (``make demo``): the network's input, top three and first layer.

    python -m digits.demo                                  # models/model.keras, a free port
    python -m digits.demo --model models:/digits-cnn@champion --port 7860

A Gradio page on 127.0.0.1 with a canvas (mouse, finger or pen) and a photo upload. Each
drawing or photo goes through ``digits.images.prepare_image``, the function
``digits-predict`` uses, and the page shows the 28x28 image the network gets, the three most
likely classes (names from the dataset catalog) and the first conv block's output, drawn by
``digits.network_figures.layer_output_figure`` as the visualize stage draws it.

The model is loaded as ``digits-predict`` and ``make serve`` load it: a ``.keras`` file in
Keras safe mode, or an MLflow model URI whose ``.keras`` file is first checked against its run
(``digits.logged_model``). Uploads are bounded twice: Gradio refuses a file over
``MAX_UPLOAD_BYTES``, and ``prepare_image`` opens PNG and JPEG only, within its pixel caps.

The page works offline: Gradio's own front end is served from the package, the theme uses the
system's fonts instead of Google Fonts, and Gradio's analytics and version check and Hugging
Face's telemetry are switched off (``OFFLINE_ENVIRONMENT``) before Gradio is imported.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from digits.errors import PipelineError

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    import keras
    from matplotlib.figure import Figure
    from PIL import Image

DEFAULT_MODEL = "models/model.keras"
TOP_CLASSES = 3
SHOWN_SCALE = 10  # the 28x28 input is shown 280x280, each pixel a square
CANVAS_SIDE = 400  # pixels of the drawing canvas
BRUSH_RADIUS = 16  # pixels: a stroke about as thick, for its size, as MNIST's pen
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a photo from a phone fits
# Set before Gradio is imported: nothing of the page or its server calls out.
OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # also Gradio's version check on PyPI
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
INSTRUCTIONS = "Draw a digit, or upload a photo of one: the answer follows each stroke."


@dataclass(frozen=True)
class DemoModel:
    """A loaded model and what the page needs to name its answers."""

    keras_model: keras.Model
    source: str  # the .keras file or MLflow URI it was loaded from
    dataset: str
    class_names: tuple[str, ...]
    first_block: tuple[str, keras.Model] | None  # ``first_block`` of ``keras_model``

    @property
    def style(self) -> str:
        """How ``prepare_image`` frames an image for this dataset."""
        return "garments" if self.dataset == "fashion-mnist" else "digits"


@dataclass(frozen=True)
class Answer:
    """What the page shows for one drawing or photo."""

    image: np.ndarray  # (28, 28) float32 in [0, 1]: the network's input
    probabilities: np.ndarray  # (10,) float64
    top: list[tuple[str, float]]  # the TOP_CLASSES most likely (class name, probability)
    layer_figure: Figure | None  # the first conv block's output; None without conv layers


def load_demo_model(model: str, dataset: str | None, params: Path) -> DemoModel:
    """Load ``model`` (a ``.keras`` file or an MLflow model URI) and its class names.

    An MLflow URI resolves in the store the stages write (``MLFLOW_TRACKING_URI``, else the
    workspace's ``mlflow.db``); only its ``.keras`` file is used, once its SHA-256 matches its
    run's. Class names: ``dataset``, else the model's run tag ``dataset``, else
    ``data.dataset`` of ``params`` (``digits.predict.class_names_for``).

    Raises:
        PipelineError: The model is missing, refused or damaged, or its dataset is unknown.
    """
    from digits.errors import DataError
    from digits.predict import class_names_for, is_mlflow_uri
    from digits.pyfunc import ModelFileError, load_keras

    model_dataset = None
    try:
        if is_mlflow_uri(model):
            import mlflow

            from digits.logged_model import fetch_checked
            from digits.mlflow_store import resolve_store

            mlflow.set_tracking_uri(resolve_store(os.environ, Path.cwd()).tracking_uri)
            with tempfile.TemporaryDirectory(prefix="digits-demo-") as folder:
                checked = fetch_checked(model, folder)
                keras_model = load_keras(checked.keras_path, checked.sha256).keras_model
            model_dataset = checked.dataset
        else:
            keras_model = load_keras(model).keras_model
    except (ModelFileError, DataError) as error:
        raise PipelineError(f"model {model}: {error}") from None
    name, class_names = class_names_for(dataset or model_dataset, params)
    return DemoModel(keras_model, model, name, class_names, first_block(keras_model))


def first_block(model: keras.Model) -> tuple[str, keras.Model] | None:
    """The first conv layer's name and the model up to its block's output (the conv layer and
    the pooling and ReLU right after it, as visualize draws it); None without conv layers."""
    import keras

    from digits.models import conv_layers

    convs = conv_layers(model)
    if not convs:
        return None
    layers = model.layers
    position = layers.index(convs[0])
    while position + 1 < len(layers) and isinstance(
        layers[position + 1], keras.layers.MaxPooling2D | keras.layers.ReLU
    ):
        position += 1
    return convs[0].name, keras.Model(model.inputs, layers[position].output)


def answer(model: DemoModel, source: str | os.PathLike[str] | BinaryIO) -> Answer:
    """Prepare an image file as ``digits-predict`` does and predict it.

    Raises:
        ImageError: The file cannot be made into an input (``prepare_image``); the message
            says why.
    """
    from digits.images import prepare_image
    from digits.models import predict_logits
    from digits.network_figures import layer_output_figure
    from digits.predict import BATCH_SIZE, softmax

    image = prepare_image(source, model.style)  # (28, 28) float32 in [0, 1]
    batch = image[np.newaxis, ..., np.newaxis]  # (1, 28, 28, 1)
    probabilities = softmax(predict_logits(model.keras_model, batch, BATCH_SIZE))[0]
    order = np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]
    top = [(model.class_names[i], float(probabilities[i])) for i in order]
    figure = None
    if model.first_block is not None:
        name, outputs = model.first_block
        # A bfloat16 model's layers output bfloat16, which matplotlib cannot scale.
        output = np.asarray(outputs.predict_on_batch(batch)[0], dtype=np.float32)
        title = f"{name} output after pool and ReLU (predicted: {top[0][0]})"
        figure = layer_output_figure(batch[0], output, title)
    return Answer(image, probabilities, top, figure)


def answer_line(top: list[tuple[str, float]]) -> str:
    """The top classes as ``digits-predict`` prints a probability: ``1 (0.9731), 7 (0.0210)``."""
    return ", ".join(f"{name} ({probability:.4f})" for name, probability in top)


def shown_input(image: np.ndarray) -> Image.Image:
    """The (28, 28) input as a picture of white on black, each pixel ``SHOWN_SCALE`` wide."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    side = image.shape[0] * SHOWN_SCALE
    return Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST)


def figure_pixels(figure: Figure) -> np.ndarray:
    """A figure drawn as (height, width, 4) uint8 RGBA, at its own dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def page_outputs(model: DemoModel, source: str | os.PathLike[str] | BinaryIO | None) -> tuple:
    """The page's outputs for a drawing or photo: (input picture, {class: probability} of the
    top classes, first-layer picture, the answer as text). Nothing drawn, or a file that
    cannot be read, empties the pictures and says why."""
    from digits.images import ImageError

    if source is None:
        return None, None, None, INSTRUCTIONS
    try:
        result = answer(model, source)
    except ImageError as error:
        return None, None, None, f"Not predicted: {error}."
    layer = None if result.layer_figure is None else figure_pixels(result.layer_figure)
    return shown_input(result.image), dict(result.top), layer, answer_line(result.top)


def drawing_file(drawing: dict[str, Any] | None) -> BinaryIO | None:
    """The canvas of Gradio's sketchpad (its ``composite``, flattened on white) as a PNG file
    in memory, or None when nothing is drawn (a clear canvas is one grey level)."""
    composite = None if drawing is None else drawing.get("composite")
    if composite is None or composite.getextrema() in ((255, 255), ((255, 255),) * 3):
        return None
    stream = io.BytesIO()
    composite.convert("RGB").save(stream, format="PNG")
    stream.seek(0)
    return stream


def build_page(model: DemoModel):
    """The Gradio ``Blocks`` of the page for ``model``."""
    import gradio as gr

    noun = "garment" if model.style == "garments" else "digit"
    with gr.Blocks(title=f"Draw a {noun}: digits-pipeline") as page:
        gr.Markdown(
            f"## Draw a {noun}\nModel `{model.source}`, dataset `{model.dataset}`. The image "
            "is prepared as `digits-predict` prepares a file."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(
                        type="pil",
                        image_mode="RGB",
                        canvas_size=(CANVAS_SIDE, CANVAS_SIDE),
                        fixed_canvas=True,
                        layers=False,
                        brush=gr.Brush(
                            default_size=BRUSH_RADIUS, colors=["#000000"], color_mode="fixed"
                        ),
                        label="Draw here (mouse, finger or pen); the bin clears it",
                        elem_id="sketch",
                    )
                with gr.Tab("Upload a photo"):
                    upload = gr.File(
                        label="A PNG or JPEG photo of a digit",
                        file_types=[".png", ".jpg", ".jpeg"],
                        type="filepath",
                        elem_id="upload",
                    )
            with gr.Column():
                seen = gr.Image(
                    label="What the network sees: 28x28, light on dark",
                    interactive=False,
                    elem_id="seen",
                )
                top = gr.Label(num_top_classes=TOP_CLASSES, label="Top three", elem_id="top")
                said = gr.Markdown(INSTRUCTIONS, elem_id="answer")
        gr.Markdown("### The first conv layer's output, as the visualize stage draws it")
        layer = gr.Image(show_label=False, interactive=False, elem_id="layer")
        outputs = [seen, top, layer, said]
        # One model, one prediction at a time, whichever input asked.
        events = {"concurrency_id": "model", "concurrency_limit": 1}
        sketch.change(lambda d: page_outputs(model, drawing_file(d)), sketch, outputs, **events)
        upload.change(lambda path: page_outputs(model, path), upload, outputs, **events)
    return page


def theme():
    """Gradio's default theme on the system's fonts (its own loads them from Google Fonts)."""
    import gradio as gr

    return gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )


def main(argv: list[str] | None = None) -> None:
    """``make demo``: load the model, print the page's address, serve it until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m digits.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a .keras file or an MLflow model URI (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port of 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--dataset",
        help="the dataset whose class names to show (default: the model's run tag `dataset`, "
        "else data.dataset of --params)",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise PipelineError(
            f"--port {args.port} is not a TCP port; use 1-65535, or 0 for a free one"
        )

    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise PipelineError(
            "Gradio is not installed: `make demo` installs it (the `demo` extra of pyproject.toml)"
        )
    os.environ.update(OFFLINE_ENVIRONMENT)
    from digits.servers import free_port

    model = load_demo_model(args.model, args.dataset, args.params)
    port = args.port or free_port()
    page = build_page(model)
    print(f"demo of {model.source} on http://127.0.0.1:{port} (Ctrl+C stops it)", flush=True)
    page.launch(
        prevent_thread_lock=True,  # the wait below stops on SIGTERM as on Ctrl+C
        server_name="127.0.0.1",
        server_port=port,
        quiet=True,
        theme=theme(),
        max_file_size=MAX_UPLOAD_BYTES,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
    )
    serve_until_stopped(page)


def serve_until_stopped(page) -> None:
    """Wait until Ctrl+C, SIGTERM or SIGHUP, then close the page's server."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while page.is_running and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        page.close(verbose=False)
    print("demo stopped", flush=True)


def run(argv: list[str] | None = None) -> int:
    """``main``, a refused model or bad argument as one ``error:`` line; the exit code."""
    try:
        main(argv)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from digits.native_log import quiet_command

    quiet_command()  # before TensorFlow loads: its C++ notices (digits/native_log.py)
    sys.exit(run())
