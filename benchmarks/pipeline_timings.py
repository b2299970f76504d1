"""Pipeline timings in a fresh copy of the project: download + preprocess, a no-op
``dvc repro``, and the train stage's peak memory."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML

from benchmarks.harness import peak_memory_mib, stage_command, timed
from digits.data import idx
from digits.data.catalog import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from digits.data.shapes import IMAGE_SHAPE, NUM_CLASSES
from digits.params import read_yaml, update_params_file
from digits.runtime.checkout import copy_checkout

REPO_ROOT = Path(__file__).resolve().parents[1]


def generated_mirror(folder: Path, train_count: int, test_count: int, seed: int = 0) -> dict:
    """Write random IDX files of Fashion-MNIST's shape into ``folder``.

    Returns:
        The datasets.yaml entry whose checksums verify them.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for images_name, labels_name, count in [
        (TRAIN_IMAGES, TRAIN_LABELS, train_count),
        (TEST_IMAGES, TEST_LABELS, test_count),
    ]:
        arrays[images_name] = rng.integers(0, 256, (count, *IMAGE_SHAPE[:2]), dtype=np.uint8)
        arrays[labels_name] = rng.integers(0, NUM_CLASSES, count, dtype=np.uint8)
    files = idx.write_gz_files(folder, arrays, compresslevel=1)
    class_names = [f"class{k}" for k in range(NUM_CLASSES)]
    return {"mirrors": [], "class_names": class_names, "files": files}


def project_env(mirror: Path) -> dict[str, str]:
    """The environment DVC and the stages run with in the copy: this interpreter first on
    PATH (dvc.yaml says ``python``), ``DATA_MIRROR``, no analytics, a git identity."""
    # Runs go to the copy's own store, whatever this process's MLflow settings are.
    inherited = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {
        **inherited,
        # dvc.yaml says `python`: the interpreter running this benchmark.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA_MIRROR": str(mirror.resolve()),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }


def pipeline_figures(
    root: Path, mirror: Path, params: dict[str, dict], catalog: dict | None = None
) -> dict[str, float]:
    """Time the pipeline in a fresh copy of the project at ``root`` (its own git repo).

    Download + preprocess run from ``mirror`` through ``dvc repro``; train and evaluate
    complete the pipeline; then a no-op ``dvc repro`` is timed three times; last, the train
    command of dvc.yaml runs once more, as a child process, to read its peak memory. That peak
    does not grow with ``train.steps``: the batch schedule (4 bytes per image drawn) is the
    only array that does, so a short run measures it.

    Args:
        root: An empty or missing folder for the copy; ``root/data/processed`` holds the
            splits afterwards.
        mirror: A DATA_MIRROR folder holding ``<dataset>/<file>.gz``.
        params: ``{section: {key: value}}`` merged into the copy's params.yaml.
        catalog: Entries added to the copy's datasets.yaml (generated data).

    Returns:
        ``download_preprocess_seconds``, ``noop_repro_seconds``, ``train_peak_memory_mib``.
    """
    copy_checkout(REPO_ROOT, root)
    if catalog:
        with (root / "datasets.yaml").open("a") as stream:
            YAML(typ="safe", pure=True).dump(catalog, stream)
    update_params_file(root / "params.yaml", params)
    env = project_env(mirror)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
        timed(command, root, env)
    download_preprocess = timed(["dvc", "repro", "preprocess"], root, env)
    timed(["dvc", "repro"], root, env)
    noop = statistics.median(timed(["dvc", "repro"], root, env) for _ in range(3))
    # The stage's own command line; `python` resolves through PATH as under DVC.
    train_command = stage_command(read_yaml(root / "dvc.yaml")["stages"], "train")
    memory = peak_memory_mib(train_command, root, env)
    return {
        "download_preprocess_seconds": round(download_preprocess, 2),
        "noop_repro_seconds": round(noop, 2),
        "train_peak_memory_mib": round(memory, 1),
    }
