"""make demo end to end: a drawn one and zero are recognised in a real browser with the
network off, a photo answers as digits-predict does, the address printed opens the page, and
make passes MODEL and PORT as typed.

The model is trained here on digits drawn as strokes (``helpers.strokes``). The browser test
saves its screenshots into ``$DEMO_SCREENSHOTS`` when set (docs/images/ holds the
documentation's), else into the test's temporary folder.
"""

from __future__ import annotations

import http.server
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import chromium
from helpers.makeruns import make_calls
from helpers.paths import REPO_ROOT
from helpers.strokes import photo_of_a_zero, predict_cli, top_three, train_stroke_model

from digits.runtime.local_servers import answers, free_port, running, stop
from digits.serving import demo

# An answer line of the page: three "name (probability)" in digits-predict's format, joined
# by ", "; ANSWER_ITEM finds each (the separator is not part of a name).
NAME_AND_PROBABILITY = r"(.+?) \((\d\.\d{4})\)"
ANSWER = re.compile(rf"{NAME_AND_PROBABILITY}(, {NAME_AND_PROBABILITY}){{2}}")
ANSWER_ITEM = re.compile(rf"(?:^|, ){NAME_AND_PROBABILITY}")


@pytest.fixture(scope="module")
def stroke_model(tmp_path_factory) -> Path:
    """``helpers.strokes.train_stroke_model``'s .keras file, in a workspace of its own."""
    return train_stroke_model(tmp_path_factory.mktemp("workspace"))


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


@pytest.mark.slow
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
        stop(server)


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
    stroke_model, recording_proxy, tmp_path, capsys
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = photo_of_a_zero(tmp_path)
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
        upload_file(driver, photo)
        uploaded = next_answer(driver, demo.INSTRUCTIONS)
        wait_for_pictures(driver)
        driver.save_screenshot(str(screenshots / "demo-upload.png"))
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
    assert server.returncode == 0, f"the demo did not stop cleanly on SIGTERM:\n{log.read_text()}"
    assert uploaded == top_three(predict_cli(capsys, photo, stroke_model))
    assert resources and all(url.startswith(f"{base}/") for url in resources), resources
    assert recording_proxy.requests == [], "the demo's server tried to reach the internet"
    assert f"demo of models/model.keras on {base} " in log.read_text()
