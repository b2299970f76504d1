"""Image files from users: only PNG and JPEG are opened, the pixel count is capped before
decoding, large photos are decoded small, and each refused file is one error line while the
valid file beside it is still predicted. Peak memory is measured in the predicting process
and compared with the same process predicting the valid file alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.imagefiles import POSTSCRIPT, digit_jpeg, grey_png, small_digit_png
from helpers.paths import REPO_ROOT

from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace
from digits.serving.images import MAX_PIXELS

# Peak memory a refused or reduced file may add to predicting the valid file alone.
EXTRA_PEAK_BYTES = 80 * 1024 * 1024
# digits-predict in a fresh process, its exit code and peak resident memory in a JSON file.
MEASURED = """
import json, resource, sys
from digits.serving.predict import run
code = run(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "peak_bytes": peak * unit}, out)
"""


class Predicted:
    def __init__(self, result: subprocess.CompletedProcess, measured: dict) -> None:
        self.code = measured["code"]
        self.peak = measured["peak_bytes"]
        self.out = result.stdout.splitlines()
        self.errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        self.stderr = result.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("limits")
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    small = params_replace(params, conv1_filters=4, conv2_filters=8, fc_size=16)
    build_model(small).save(folder / "model.keras")
    small_digit_png(folder / "valid.png")
    return folder


def predict(workspace: Path, files: list[Path], env: dict | None = None) -> Predicted:
    out = workspace / "measured.json"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, str(out), *map(str, files),
         "--model", str(workspace / "model.keras"), "--dataset", "mnist"],
        capture_output=True, text=True, cwd=workspace, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Predicted(result, json.loads(out.read_text()))


@pytest.fixture(scope="module")
def alone(workspace) -> Predicted:
    """The valid file predicted alone: the baseline of peak memory for one prediction."""
    predicted = predict(workspace, [workspace / "valid.png"])
    assert predicted.code == 0 and not predicted.errors, predicted.stderr
    return predicted


def assert_valid_predicted_and_refused(predicted: Predicted, workspace: Path, bad: Path, why: str):
    assert predicted.code == 1
    assert len(predicted.out) == 1 and predicted.out[0].startswith(f"{workspace / 'valid.png'}: ")
    assert len(predicted.errors) == 1, predicted.stderr
    assert predicted.errors[0].startswith(f"error: {bad}: {why}"), predicted.stderr
    assert "Traceback" not in predicted.stderr


def test_a_decompression_bomb_is_refused_from_its_header(workspace, alone):
    bomb = grey_png(workspace / "bomb.png", 30_000, 30_000, rows=100)
    predicted = predict(workspace, [bomb, workspace / "valid.png"])
    assert_valid_predicted_and_refused(predicted, workspace, bomb, "more pixels than")
    assert f"the limit is {MAX_PIXELS:,}" in predicted.errors[0]
    assert predicted.peak - alone.peak < EXTRA_PEAK_BYTES


def test_a_13000_pixel_square_png_is_refused_before_decoding(workspace, alone):
    big = grey_png(workspace / "big.png", 13_000, 13_000)
    predicted = predict(workspace, [big, workspace / "valid.png"])
    assert_valid_predicted_and_refused(
        predicted, workspace, big, f"13000x13000 is more than the {MAX_PIXELS:,} pixels"
    )
    assert predicted.peak - alone.peak < EXTRA_PEAK_BYTES, (predicted.peak, alone.peak)


def test_postscript_named_png_never_reaches_ghostscript(workspace, alone, tmp_path):
    # A `gs` first on PATH that leaves a marker: Pillow's EPS plugin would run it.
    tools = tmp_path / "bin"
    tools.mkdir()
    marker = tmp_path / "gs-ran"
    (tools / "gs").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (tools / "gs").chmod(0o755)
    looks_like = workspace / "looks_like.png"
    looks_like.write_bytes(POSTSCRIPT)
    path = f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"
    predicted = predict(workspace, [looks_like, workspace / "valid.png"], env={"PATH": path})
    assert_valid_predicted_and_refused(predicted, workspace, looks_like, "not a PNG or JPEG image")
    assert not marker.exists(), "Ghostscript ran"


def test_a_phone_photo_and_a_large_png_are_predicted_in_little_memory(workspace):
    photo = digit_jpeg(workspace / "photo.jpg", 6000, 4000)  # 24 megapixels
    scan = grey_png(workspace / "scan.png", 3000, 3000)
    # The baseline predicts as many images: a batch of another size costs a new trace.
    copies = [small_digit_png(workspace / f"valid{index}.png") for index in range(3)]
    alone = predict(workspace, copies)
    assert alone.code == 0 and not alone.errors, alone.stderr
    predicted = predict(workspace, [photo, scan, workspace / "valid.png"])
    assert predicted.code == 0 and not predicted.errors, predicted.stderr
    assert [line.split(": ")[0] for line in predicted.out] == [
        str(photo),
        str(scan),
        str(workspace / "valid.png"),
    ]
    assert predicted.peak - alone.peak < EXTRA_PEAK_BYTES, (predicted.peak, alone.peak)
