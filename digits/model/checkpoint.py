"""Checkpoints of the train stage: what it takes to continue an interrupted run exactly.

One ``.npz`` file beside the model (``models/checkpoint.npz``), git-ignored and not a DVC
output, replaced atomically every ``eval_every`` steps and deleted when the stage completes.
It holds every variable of the model (weights and the dropout layer's seed state), every
variable of the optimizer (its iteration counter, learning rate and moments), the weights of
the best evaluation when ``restore_best_weights`` is on, and a small JSON record: the step
reached (the position in the batch schedule, which the params fix), the history so far,
the MLflow run, a digest of every array, and the key of the run.

The key is a hash of everything that determines the run: the ``train`` params, the MD5 of
the data files, the source of the code that trains (the stage script and the ``digits``
modules it imports: its ``dvc.yaml`` deps) and the library versions. A checkpoint whose key
differs is never resumed, and one that fails any check is reported and ignored.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.params import TrainParams
from digits.runtime import imports
from digits.runtime.atomic import atomic_path
from digits.tracking.run_values import file_md5

FORMAT_VERSION = 1
# Their versions decide the arithmetic, so a checkpoint does not outlive an upgrade.
LIBRARIES = ("tensorflow-cpu", "tensorflow", "keras", "numpy")
GROUPS = ("variables", "optimizer_variables", "best_variables")


@dataclass(frozen=True)
class TrainingState:
    """The training loop where it stands after an evaluation: a checkpoint's content.

    Arrays are in the order of ``model.variables`` and ``optimizer.variables``.
    """

    step: int  # steps done; the next batch is row ``step`` of the batch schedule
    rows: list[dict]  # the history so far, one row per evaluation
    train_seconds: float  # time spent in optimizer steps so far
    elapsed_seconds: float  # time since training started, across interruptions
    variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    best_variables: list[np.ndarray] | None = None  # restore_best_weights: at the best row


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back: the state and the MLflow run it logs into (None: untracked)."""

    state: TrainingState
    run_id: str | None


class UnusableCheckpoint(Exception):
    """The checkpoint is damaged or belongs to another run; the message says which."""


def run_key(params: TrainParams, data_files: Iterable[Path], code_files: Iterable[Path]) -> str:
    """SHA-256 over the params, the data files' MD5 and the code files' bytes."""
    digest = hashlib.sha256()
    record = {
        "format": FORMAT_VERSION,
        "train": params.model_dump(mode="json"),
        "data": {Path(path).name: file_md5(path) for path in data_files},
        "libraries": library_versions(),
    }
    digest.update(json.dumps(record, sort_keys=True).encode())
    for path in sorted(code_files, key=lambda item: Path(item).as_posix()):
        digest.update(f"\0{Path(path).name}\0".encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def code_files(stage_file: str | os.PathLike[str]) -> list[Path]:
    """The stage script and every ``digits`` module it imports: the code its dvc.yaml deps
    list (``tests/test_layout.py`` checks that the two agree)."""
    script = Path(stage_file).resolve()
    return sorted({script} | imports.library_closure(script))


def library_versions() -> dict[str, str]:
    """``{distribution: version}`` of the installed libraries in ``LIBRARIES``."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def save(path: str | os.PathLike[str], key: str, state: TrainingState, run_id: str | None) -> int:
    """Write the checkpoint atomically (``digits.runtime.atomic``: a temporary file beside it,
    flushed to disk, then renamed), so an interruption leaves the previous checkpoint whole.

    Returns:
        The file's size in bytes.
    """
    arrays: dict[str, np.ndarray] = {}
    for group in GROUPS:
        for index, value in enumerate(getattr(state, group) or ()):
            arrays[f"{group}/{index:04d}"] = np.asarray(value)
    record = {
        "format": FORMAT_VERSION,
        "key": key,
        "run_id": run_id,
        "step": state.step,
        "rows": state.rows,
        "train_seconds": state.train_seconds,
        "elapsed_seconds": state.elapsed_seconds,
        "has_best": state.best_variables is not None,
        "digest": arrays_digest(arrays),
    }
    with atomic_path(path, scratch=True) as temporary:
        np.savez(temporary, record=np.array(json.dumps(record)), **arrays)
        return temporary.stat().st_size


def load(path: str | os.PathLike[str], key: str) -> Checkpoint | None:
    """Read the checkpoint at ``path`` if there is one; remove temporary files a killed save
    left beside it.

    Returns:
        The checkpoint, or None when there is none.

    Raises:
        UnusableCheckpoint: The file is damaged, or its key is not ``key`` (another
            configuration, other data or other code).
    """
    path = Path(path)
    for leftover in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        leftover.unlink(missing_ok=True)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            record = json.loads(str(archive["record"]))
            arrays = {name: archive[name] for name in archive.files if name != "record"}
        if record["key"] != key:
            raise UnusableCheckpoint(f"{path} belongs to another run (other params, data or code)")
        if record["digest"] != arrays_digest(arrays):
            raise ValueError("its arrays do not match their digest")
        return Checkpoint(_state(record, arrays), _run_id(record["run_id"]))
    except UnusableCheckpoint:
        raise
    except Exception as error:  # zip, NumPy and JSON each raise their own types
        raise UnusableCheckpoint(f"{path} is damaged ({type(error).__name__}: {error})") from None


def resume_point(path: str | os.PathLike[str], key: str) -> Checkpoint | None:
    """The checkpoint of this very run at ``path``, if any; an unusable one is reported on
    stderr and ignored (training then starts from step 0)."""
    try:
        found = load(path, key)
    except UnusableCheckpoint as problem:
        print(f"warning: {problem}; ignoring it, training starts from step 0", file=sys.stderr)
        return None
    if found is not None:
        print(f"resuming from step {found.state.step} ({path})", flush=True)
    return found


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _state(record: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> TrainingState:
    if record["format"] != FORMAT_VERSION:
        raise ValueError(f"format {record['format']!r}, expected {FORMAT_VERSION}")
    groups = {
        group: [arrays[name] for name in sorted(arrays) if name.startswith(f"{group}/")]
        for group in GROUPS
    }
    if not isinstance(record["step"], int) or not isinstance(record["rows"], list):
        raise ValueError(f"step {record['step']!r} or rows of the wrong type")
    return TrainingState(
        step=record["step"],
        rows=record["rows"],
        train_seconds=float(record["train_seconds"]),
        elapsed_seconds=float(record["elapsed_seconds"]),
        variables=groups["variables"],
        optimizer_variables=groups["optimizer_variables"],
        best_variables=groups["best_variables"] if record["has_best"] else None,
    )


def _run_id(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"run_id {value!r} is neither a string nor null")
    return value
