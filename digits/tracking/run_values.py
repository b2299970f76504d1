"""What a run records, computed without MLflow: param spellings, tags, file digests, pins.

Pure functions (or a git / file read) that ``digits.tracking.logger`` logs; kept apart so that
they are tested without a store and read in one place.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from digits.params import Params

# Distributions a logged Keras model needs, each as its alternatives in order of preference.
MODEL_DISTRIBUTIONS = (("keras",), ("tensorflow-cpu", "tensorflow"))


def model_name(dataset: str, model: str) -> str:
    """The logged model's name: what it is, e.g. ``mnist-cnn``, ``fashion-mnist-mlp``."""
    return f"{dataset}-{model}"


def format_param(value: Any) -> str:
    """A param value as params.yaml spells it (``true``, ``[0, 13]``, ``0.0001``, ``cnn``)."""
    if isinstance(value, bool | tuple | list):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def dotted_params(params: Params, sections: tuple[str, ...]) -> dict[str, str]:
    """``{"train.fc_size": "128", ...}`` for the given (loaded) sections."""
    flat = {}
    for name in sections:
        section = getattr(params, name)
        if section is None:
            raise ValueError(f"section {name!r} was not loaded; pass it to load_params")
        for key, value in section.model_dump().items():
            flat[f"{name}.{key}"] = format_param(value)
    return flat


def top_level_metrics(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The numbers at the top of a metrics file, as ``{prefix + key: value}``.

    Nested tables (per-class scores) stay in the logged file: as metrics, each row becomes a
    chart section in the UI, ahead of the learning curves.
    """
    return {
        prefix + key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def run_tags(environ: Mapping[str, str], commit: str | None) -> dict[str, str]:
    """Tags of a new run: the git commit and, for ``dvc exp run``, the experiment's name."""
    tags = {}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = environ["DVC_EXP_NAME"]
    return tags


def git_commit(environ: Mapping[str, str], cwd: Path) -> str | None:
    """The commit the code comes from: an experiment's baseline, else ``HEAD``, else None."""
    if environ.get("DVC_EXP_BASELINE_REV"):
        return environ["DVC_EXP_BASELINE_REV"]
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 of a file's bytes: the name DVC gives the file in its cache."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pinned_requirements() -> list[str]:
    """``dist==version`` of the installed Keras and TensorFlow, which a logged model needs.

    Given to MLflow so that it does not infer them, which reloads the model in a subprocess,
    many times longer than logging it. Looked up by distribution name: mapping modules to
    distributions scans every installed package.
    """
    pins = []
    for candidates in MODEL_DISTRIBUTIONS:
        for name in candidates:
            try:
                pins.append(f"{name}=={importlib.metadata.version(name)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return pins
