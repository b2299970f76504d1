"""TensorFlow's native notices stay out of a stage's stderr; real errors still show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.idxdata import write_tiny_splits
from helpers.paramsfile import TRACKING_OFF, params_copy
from helpers.paths import REPO_ROOT

from digits.runtime.native_log import PREAMBLE, copy_filtered, keep

# As TensorFlow 2.21 prints them (the E0000 line shortened).
ONEDNN = (
    b"I0000 00:00:1796411412.574132    6967 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results"
)
FALSE_ALARM = (
    b"E0000 00:00:1796411427.020345    6967 node_def_util.cc:682] NodeDef mentions attribute "
    b"use_unbounded_threadpool which is not in the op definition"
)
REAL_ERROR = b"E0000 00:00:1796411427.020345    6967 cpu_allocator.cc:12] out of memory"
NOISE = ("absl::InitializeLog", "I0000", "oneDNN", "E0000", "node_def_util", "unbounded")


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (PREAMBLE, False),
        (ONEDNN, False),
        (FALSE_ALARM, False),
        (REAL_ERROR, True),
        (b"W0000 00:00:1796411427.020345    6967 a.cc:1] a warning", True),
        (b"error: data/processed/train.npz: no such file", True),
        (b"Traceback (most recent call last):", True),
        (b"", True),
    ],
)
def test_keep_at_the_default_level(line: bytes, shown: bool):
    assert keep(line, 1) is shown


def test_levels_follow_tf_cpp_min_log_level():
    warning = b"W0000 00:00:1796411427.020345    6967 a.cc:1] a warning"
    fatal = b"F0000 00:00:1796411427.020345    6967 a.cc:1] check failed"
    assert [keep(warning, level) for level in range(4)] == [True, True, False, False]
    assert [keep(REAL_ERROR, level) for level in range(4)] == [True, True, True, False]
    assert all(keep(fatal, level) for level in range(4))
    assert keep(PREAMBLE, 0) and keep(FALSE_ALARM, 0)  # 0: everything, as TensorFlow's own


def test_copy_filtered_keeps_order_and_a_last_line_without_newline(tmp_path: Path):
    source = tmp_path / "in"
    source.write_bytes(b"\n".join([PREAMBLE, b"one", ONEDNN, FALSE_ALARM, b"two", b"three"]))
    target = tmp_path / "out"
    with source.open("rb") as reading, target.open("wb") as writing:
        copy_filtered(reading.fileno(), writing.fileno(), 1)
    assert target.read_bytes() == b"one\ntwo\nthree"


# A process that filters its stderr, writes native-style lines on file descriptor 2 (as
# TensorFlow's C++ does) and ends without Python's clean-up, as a crash would.
CRASH = """
import os, sys
from digits.runtime.native_log import filter_native_log
filter_native_log()
os.write(2, {lines!r})
print("error: something real", file=sys.stderr, flush=True)
os._exit(3)
"""


def test_a_crashing_process_still_shows_its_errors():
    lines = b"\n".join([PREAMBLE, ONEDNN, REAL_ERROR, FALSE_ALARM]) + b"\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CRASH.format(lines=lines)],
        cwd=REPO_ROOT, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.decode().splitlines() == [REAL_ERROR.decode(), "error: something real"]


@pytest.mark.slow
def test_train_stage_prints_no_tensorflow_notices(tmp_path: Path):
    data = write_tiny_splits(tmp_path / "processed")
    params_file = params_copy(
        tmp_path,
        {
            "train": {"steps": 4, "eval_every": 2, "conv2_filters": 4, "batch_size": 8},
            **TRACKING_OFF,
        },
    )
    # The stages' own default level (stages/__init__.py), not one the caller's shell set.
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO_ROOT)  # run from tmp_path: outputs stay inside the workspace
    outputs = {"--model": "models/model.keras", "--metrics": "train.json",
               "--run-facts": "train_run.json", "--history": "h.csv", "--run": "run.json",
               "--checkpoint": "checkpoint.npz"}  # fmt: skip
    options = [item for pair in outputs.items() for item in pair]

    def train(data_folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stages.train", "--params", str(params_file),
             "--data", str(data_folder), *options],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def noise(stderr: str) -> list[str]:
        return [line for line in stderr.splitlines() if any(word in line for word in NOISE)]

    result = train(data)
    assert result.returncode == 0, result.stderr
    assert "done: val_acc" in result.stdout
    assert noise(result.stderr) == []

    missing = train(tmp_path / "nowhere")  # fails after TensorFlow loaded: the error shows
    assert missing.returncode == 1, missing.stderr
    assert "error:" in missing.stderr and "nowhere" in missing.stderr
    assert noise(missing.stderr) == []
