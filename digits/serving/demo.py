"""A page to draw a digit on (``make demo``): the network's input, top three and first layer.

    python -m digits.serving.demo                         # models/model.keras, a free port
    python -m digits.serving.demo --model models:/digits-cnn@champion --port 7860

A Gradio page on 127.0.0.1 with a canvas (mouse, finger or pen) and a photo upload. Each
drawing or photo is answered by ``digits.serving.demo_model``: prepared as ``digits-predict``
prepares a file, by a model loaded the checked way. The page shows the 28x28 image the network
gets, the three most likely classes and the first conv block's output. Uploads are bounded
twice: Gradio refuses a file over ``MAX_UPLOAD_BYTES``, and ``prepare_image`` opens PNG and
JPEG only, within its pixel caps.

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
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from digits.errors import PipelineError
from digits.serving.demo_model import (
    TOP_CLASSES,
    Answer,
    DemoModel,
    answer,
    answer_line,
    layer_figure,
    load_demo_model,
)

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    from matplotlib.figure import Figure
    from PIL import Image

DEFAULT_MODEL = "models/model.keras"
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
    """The page's answer to a drawing or photo: (input picture, {class: probability} of the
    top classes, the answer as text, the ``Answer`` for ``layer_picture``). Nothing drawn, or
    a file that cannot be read, empties the pictures and says why."""
    from digits.serving.images import ImageError

    if source is None:
        return None, None, INSTRUCTIONS, None
    try:
        result = answer(model, source)
    except ImageError as error:
        return None, None, f"Not predicted: {error}.", None
    return shown_input(result.image), dict(result.top), answer_line(result.top), result


def layer_picture(model: DemoModel, answered: Answer | None) -> np.ndarray | None:
    """The first conv block's output for ``answered`` as pixels; None for no answer or a model
    without conv layers. Drawn after the answer is shown: the figure takes much longer."""
    figure = None if answered is None else layer_figure(model, answered)
    return None if figure is None else figure_pixels(figure)


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
        answered = gr.State(None)  # the last Answer, for the layer picture drawn after it
        outputs = [seen, top, said, answered]
        # One model, one prediction at a time, whichever input asked.
        events = {"concurrency_id": "model", "concurrency_limit": 1}
        drawn = sketch.change(
            lambda drawing: page_outputs(model, drawing_file(drawing)), sketch, outputs, **events
        )
        chosen = upload.change(lambda path: page_outputs(model, path), upload, outputs, **events)
        for event in (drawn, chosen):  # then the slower picture of the first layer
            event.then(lambda last: layer_picture(model, last), answered, layer, **events)
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
        prog="python -m digits.serving.demo", description=__doc__.split("\n")[0]
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
    from digits.runtime.local_servers import free_port

    model = load_demo_model(args.model, args.dataset, args.params)
    port = args.port or free_port()
    page = build_page(model)
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
    # Once the page is served: the address opens at once.
    print(f"demo of {model.source} on http://127.0.0.1:{port} (Ctrl+C stops it)", flush=True)
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
    from digits.runtime.native_log import quiet_command

    quiet_command()  # before TensorFlow loads: its C++ notices (digits/native_log.py)
    sys.exit(run())
