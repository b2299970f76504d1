"""make demo: a drawn digit is recognised in a real browser, offline; photos answer as
digits-predict does; the model is loaded the checked way.

The model is trained here on synthetic digits drawn as strokes (ones as slanted bars, zeros as
rings), prepared by the page's own preparation. The browser test saves its screenshots into
``$DEMO_SCREENSHOTS`` when set (docs/images/ holds the documentation's), else into the test's
temporary folder.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from browser import chromium
from makeruns import make_calls
from PIL import Image, ImageDraw

from digits.data.arrays import Split
from digits.errors import PipelineError
from digits.model import training
from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace
from digits.runtime.local_servers import answers, free_port, running
from digits.serving import demo, demo_model
from digits.serving.images import prepare_image, to_training_format
from digits.serving.predict import run as predict_run

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = REPO_ROOT / "params.yaml"
DIGITS = tuple("0123456789")
# An answer line of the page: three "name (probability)" in digits-predict's format, joined
# by ", "; ANSWER_ITEM finds each (the separator is not part of a name).
NAME_AND_PROBABILITY = r"(.+?) \((\d\.\d{4})\)"
ANSWER = re.compile(rf"{NAME_AND_PROBABILITY}(, {NAME_AND_PROBABILITY}){{2}}")
ANSWER_ITEM = re.compile(rf"(?:^|, ){NAME_AND_PROBABILITY}")


def stroke_digit(label: int, rng: np.random.Generator, paper: int = 255) -> Image.Image:
    """A 280x280 grey picture of a one (a slanted bar) or a zero (a ring), dark on ``paper``."""
    image = Image.new("L", (280, 280), paper)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(12, 30))
    if label == 1:
        x, slant = rng.uniform(100, 180), rng.uniform(-40, 40)
        top, bottom = rng.uniform(30, 80), rng.uniform(200, 250)
        draw.line([(x + slant / 2, top), (x - slant / 2, bottom)], fill=0, width=width)
    else:
        centre_x, centre_y = rng.uniform(110, 170, size=2)
        radius_x, radius_y = rng.uniform(40, 80), rng.uniform(70, 110)
        box = [centre_x - radius_x, centre_y - radius_y, centre_x + radius_x, centre_y + radius_y]
        draw.ellipse(box, outline=0, width=width)
    return image


def stroke_split(count: int, seed: int) -> Split:
    """``count`` stroke digits, ones and zeros in turn, in the training format."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = [to_training_format(stroke_digit(int(label), rng)) for label in labels]
    return Split(np.stack(images)[..., None], np.eye(10, dtype=np.float32)[labels], DIGITS)


def small_params(**changes):
    params = load_params(PARAMS, sections=("train",)).train
    return params_replace(
        params, **{"conv1_filters": 8, "conv2_filters": 8, "fc_size": 16, **changes}
    )


@pytest.fixture(scope="module")
def stroke_model(tmp_path_factory) -> Path:
    """A small CNN trained on 300 stroke digits that tells a one from a zero; its .keras file,
    where the train stage writes it in a workspace (``models/model.keras``)."""
    params = small_params(steps=120, eval_every=60, learning_rate=1e-3, batch_size=32)
    result = training.train(params, stroke_split(300, seed=1), stroke_split(40, seed=2))
    assert result.metrics["val_accuracy"] == 1.0, result.metrics
    path = tmp_path_factory.mktemp("workspace") / "models" / "model.keras"
    path.parent.mkdir()
    result.model.save(path)
    return path


@pytest.fixture
def photo_of_a_zero(tmp_path) -> Path:
    """A PNG of a zero drawn dark on grey paper, larger than 28x28."""
    path = tmp_path / "zero.png"
    stroke_digit(0, np.random.default_rng(7), paper=215).save(path)
    return path


def predict_cli(capsys, path: Path, model: Path) -> np.ndarray:
    """digits-predict's probabilities for one file."""
    assert predict_run([str(path), "--model", str(model), "--dataset", "mnist", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    return np.array(json.loads(line)["probabilities"])


def top_three(probabilities: np.ndarray) -> list[tuple[str, str]]:
    """The three most likely digits and their probabilities as the page prints them."""
    order = np.argsort(-probabilities, kind="stable")[:3]
    return [(DIGITS[i], f"{probabilities[i]:.4f}") for i in order]


def test_a_photo_is_prepared_and_predicted_exactly_as_digits_predict_does(
    stroke_model, photo_of_a_zero, capsys
):
    model = demo_model.load_demo_model(str(stroke_model), "mnist", PARAMS)
    result = demo_model.answer(model, photo_of_a_zero)
    np.testing.assert_array_equal(result.image, prepare_image(photo_of_a_zero))
    expected = predict_cli(capsys, photo_of_a_zero, stroke_model)
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-12)
    assert [(name, f"{p:.4f}") for name, p in result.top] == top_three(expected)
    assert result.top[0][0] == "0"
    # The first conv block's output, one tile per filter, beside the input as visualize draws.
    assert len(demo_model.layer_figure(model, result).axes) > small_params().conv1_filters


def test_the_page_says_why_a_file_is_not_predicted(stroke_model, tmp_path):
    model = demo_model.load_demo_model(str(stroke_model), "mnist", PARAMS)
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    assert demo.page_outputs(model, text) == (
        None, None, "Not predicted: not a PNG or JPEG image.", None
    )  # fmt: skip
    assert demo.layer_picture(model, None) is None
    assert demo.page_outputs(model, None) == (None, None, demo.INSTRUCTIONS, None)


def test_a_cleared_canvas_is_no_drawing():
    blank = {"composite": Image.new("RGB", (40, 40), "white")}
    assert demo.drawing_file(blank) is None
    dot = Image.new("RGB", (40, 40), "white")
    dot.putpixel((20, 20), (0, 0, 0))
    assert demo.drawing_file({"composite": dot}).read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_missing_or_foreign_model_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"model missing\.keras: missing\.keras not found"):
        demo_model.load_demo_model("missing.keras", "mnist", PARAMS)
    (tmp_path / "model.h5").write_bytes(b"not loaded")
    with pytest.raises(PipelineError, match=r"only \.keras models are loaded"):
        demo_model.load_demo_model(str(tmp_path / "model.h5"), "mnist", PARAMS)


def test_a_champion_from_the_store_is_loaded_checked_and_a_swapped_file_refused(logged_model):
    keras_model, uri = logged_model
    client = mlflow.MlflowClient()
    version = mlflow.register_model(uri, "digits-cnn")
    client.set_registered_model_alias("digits-cnn", "champion", version.version)
    model = demo_model.load_demo_model("models:/digits-cnn@champion", "mnist", PARAMS)
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        model.keras_model.predict_on_batch(image), keras_model.predict_on_batch(image)
    )
    # Someone who can write the artifact store swaps the .keras file: refused by its digest.
    logged = client.get_logged_model(uri.removeprefix("models:/"))
    folder = Path(logged.artifact_location.removeprefix("file://"))
    build_model(small_params(seed=small_params().seed + 1)).save(folder / "data" / "model.keras")
    with pytest.raises(PipelineError, match="SHA-256 differs"):
        demo_model.load_demo_model("models:/digits-cnn@champion", "mnist", PARAMS)


def hostile(marker: Path) -> str:
    """A value that runs ``touch marker`` wherever a shell reads it (make's ``$$`` is ``$``)."""
    return f'x`touch {marker}` $$(touch {marker}) "; touch {marker}; "'


def demo_call(tmp_path: Path, variables: list[str]) -> list[str]:
    """The arguments ``make demo <variables>`` gives ``python -m digits.serving.demo``."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # its own log of calls
    (folder / "venv").mkdir()
    (folder / "venv" / ".installed-demo").touch()  # installed: make runs only the target
    calls = make_calls("demo", variables, folder)
    (words,) = [call for call in calls if "digits.serving.demo" in call]
    return words[words.index("digits.serving.demo") + 1 :]


def test_make_demo_takes_a_free_port_unless_port_is_given(tmp_path):
    assert demo_call(tmp_path, []) == ["--port", "0"]
    assert demo_call(tmp_path, ["PORT=7861"]) == ["--port", "7861"]


def test_make_demo_passes_model_and_port_as_typed_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    value = hostile(marker)
    typed = value.replace("$$", "$")
    assert demo_call(tmp_path, [f"MODEL={value}"]) == ["--port", "0", "--model", typed]
    assert demo_call(tmp_path, [f"PORT={value}"]) == ["--port", typed]
    assert not marker.exists(), "make demo ran a command from a value"


def test_the_printed_address_answers_as_soon_as_it_is_printed(stroke_model, tmp_path):
    log = tmp_path / "demo.log"
    command = [sys.executable, "-m", "digits.serving.demo", "--model", str(stroke_model),
               "--dataset", "mnist"]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with log.open("w") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path,
            env=environment, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (printed := re.search(r" on (http://127\.0\.0\.1:\d+) ", log.read_text())):
            assert server.poll() is None, f"the demo exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no address printed:\n{log.read_text()}"
            time.sleep(0.05)
        assert answers(f"{printed[1]}/"), "the address was printed before the page was served"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards nothing: it records each request line."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def refuse(self):
                proxy.requests.append(self.requestline)
                self.send_error(403, "offline test: no traffic leaves this machine")

            do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = refuse

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def recording_proxy() -> Iterator[RecordingProxy]:
    """A ``RecordingProxy`` serving until the test ends."""
    proxy = RecordingProxy()
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.server.shutdown()
    proxy.server.server_close()


def offline_environment(proxy: str, tmp_path: Path) -> dict[str, str]:
    """This environment with every proxy variable on ``proxy`` except for 127.0.0.1."""
    proxies = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    proxies |= {name.lower(): proxy for name in proxies}
    local = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return {
        **os.environ, **proxies, **local,
        "PYTHONPATH": str(REPO_ROOT), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
    }  # fmt: skip


# Chromium resolves no name but 127.0.0.1: a page that needs the internet shows it.
OFFLINE_BROWSER = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)


def draw(driver, points: list[tuple[int, int]], pointer: str) -> None:
    """One stroke through ``points`` (pixels from the canvas' centre) with W3C pointer actions
    of a ``mouse``, ``pen`` or ``touch`` pointer, after picking the brush."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#sketch button[aria-label='Brush']").click()
    canvas = driver.find_element(By.CSS_SELECTOR, "#sketch canvas")
    kinds = {
        "mouse": interaction.POINTER_MOUSE,
        "pen": interaction.POINTER_PEN,
        "touch": interaction.POINTER_TOUCH,
    }
    actions = ActionBuilder(driver, mouse=PointerInput(kinds[pointer], pointer))
    (x, y), *rest = points
    actions.pointer_action.move_to(canvas, x, y).pointer_down()
    for x, y in rest:
        actions.pointer_action.move_to(canvas, x, y)
    actions.pointer_action.pointer_up()
    actions.perform()


def ring(radius_x: int, radius_y: int) -> list[tuple[int, int]]:
    """A closed loop of 33 points around the origin, from the top, clockwise."""
    return [
        (round(radius_x * math.sin(angle)), round(-radius_y * math.cos(angle)))
        for angle in np.linspace(0, 2 * math.pi, 33)
    ]


def next_answer(driver, previous: str) -> list[tuple[str, str]]:
    """Wait for the page's answer line to change to three classes; its (name, probability)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def changed(driver) -> str | None:
        text = driver.find_element(By.ID, "answer").text.strip()
        return text if text != previous and ANSWER.fullmatch(text) else None

    text = WebDriverWait(driver, 120, poll_frequency=0.5).until(changed)
    return ANSWER_ITEM.findall(text)


def upload_file(driver, path: Path) -> None:
    """Choose ``path`` in the upload tab's file input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    inputs = WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]")
    )
    inputs[0].send_keys(str(path))


def loaded_image_width(driver, selector: str) -> int:
    """The natural width of the first loaded <img> under ``selector`` (0 if none)."""
    return driver.execute_script(
        "const img = document.querySelector(arguments[0] + ' img');"
        "return img && img.complete ? img.naturalWidth : 0;",
        selector,
    )


def wait_for_pictures(driver) -> None:
    """Wait until the page shows the network's input (28x28 enlarged) and the layer figure."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: (
            loaded_image_width(d, "#seen") == 28 * demo.SHOWN_SCALE
            and loaded_image_width(d, "#layer") > 0
        )
    )


@pytest.mark.slow
def test_a_drawn_one_and_zero_are_recognised_and_a_photo_answers_as_digits_predict(
    stroke_model, photo_of_a_zero, recording_proxy, tmp_path, capsys
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image\n")
    screenshots = Path(os.environ.get("DEMO_SCREENSHOTS") or tmp_path / "screenshots")
    screenshots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # No --model: the workspace's models/model.keras, as `make demo` runs it there.
    workspace = stroke_model.parents[1]
    command = [
        sys.executable, "-m", "digits.serving.demo", "--dataset", "mnist", "--port", str(port)
    ]  # fmt: skip
    environment = offline_environment(recording_proxy.url, tmp_path)
    log = tmp_path / "demo.log"
    with (
        running(command, f"{base}/", log, environment, cwd=workspace, timeout=300) as server,
        chromium(OFFLINE_BROWSER) as driver,
    ):
        driver.get(base)
        WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#sketch button[aria-label='Brush']")
        )
        # A vertical stroke with a mouse.
        draw(driver, [(0, dy) for dy in range(-90, 91, 10)], "mouse")
        one = next_answer(driver, demo.INSTRUCTIONS)
        assert one[0][0] == "1", one
        wait_for_pictures(driver)
        # The bin clears the canvas; then a closed loop with a pen.
        driver.find_element(By.CSS_SELECTOR, "#sketch button[aria-label='Clear canvas']").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "answer").text.strip() == demo.INSTRUCTIONS
        )
        draw(driver, ring(60, 90), "pen")
        zero = next_answer(driver, demo.INSTRUCTIONS)
        assert zero[0][0] == "0", zero
        wait_for_pictures(driver)
        driver.set_window_size(1400, 1500)
        driver.save_screenshot(str(screenshots / "demo-drawn.png"))
        # Files through the upload tab: one that is no image is named; a photo gets the same
        # three classes and figures as digits-predict.
        driver.find_element(By.XPATH, "//button[@role='tab'][.='Upload a photo']").click()
        upload_file(driver, text_file)
        WebDriverWait(driver, 60).until(
            lambda d: (
                d.find_element(By.ID, "answer").text == "Not predicted: not a PNG or JPEG image."
            )
        )
        driver.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "answer").text.strip() == demo.INSTRUCTIONS
        )
        upload_file(driver, photo_of_a_zero)
        uploaded = next_answer(driver, demo.INSTRUCTIONS)
        wait_for_pictures(driver)
        driver.save_screenshot(str(screenshots / "demo-upload.png"))
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
    assert server.returncode == 0, f"the demo did not stop cleanly on SIGTERM:\n{log.read_text()}"
    assert uploaded == top_three(predict_cli(capsys, photo_of_a_zero, stroke_model))
    assert resources and all(url.startswith(f"{base}/") for url in resources), resources
    assert recording_proxy.requests == [], "the demo's server tried to reach the internet"
    assert f"demo of models/model.keras on {base} " in log.read_text()
