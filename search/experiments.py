"""The experiments of the current commit as DVC reports them (``dvc exp show --json``).

Metric names are ``<metrics file stem>.<key>``, as in the review report:
``metrics/train.json`` -> ``train.val_accuracy``, ``metrics/eval.json`` -> ``eval.accuracy``.
Param names are the dotted keys of params.yaml (``train.fc_size``), as ``dvc exp run -S``
takes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from digits.errors import PipelineError

# executor.state in `dvc exp show --json`; an experiment without an executor has finished.
QUEUED, RUNNING, SUCCESS, FAILED = "queued", "running", "success", "failed"


@dataclass(frozen=True)
class Experiment:
    """One row of ``dvc exp show``: an experiment, or the commit it is based on."""

    name: str
    rev: str
    state: str  # queued | running | success | failed
    params: dict[str, Any] = field(default_factory=dict)  # "train.fc_size" -> 128
    metrics: dict[str, Any] = field(default_factory=dict)  # "train.val_accuracy" -> 0.91


def run_dvc(
    args: list[str], cwd: Path, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run ``dvc <args>`` with this interpreter's DVC in ``cwd``; raise if it fails or, given
    a ``timeout`` in seconds, if it has not finished by then (it is killed)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        raise PipelineError(
            f"`dvc {' '.join(args)}` did not finish within {timeout:.0f} s in {cwd}"
        ) from expired
    if result.returncode != 0:
        details = result.stderr.strip() or result.stdout.strip()
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {cwd}:\n{details}")
    return result


def start_queue(jobs: int, cwd: Path, env: dict[str, str] | None = None) -> None:
    """``dvc queue start --jobs N``, without waiting for the queue to drain.

    The workers it spawns inherit its stdout and stderr: captured into pipes, the call would
    return only when the last worker exits, i.e. when the queue is empty.
    """
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "start", "--jobs", str(jobs)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise PipelineError(f"`dvc queue start --jobs {jobs}` failed in {cwd}; run it to see why")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _row(entry: dict[str, Any], name: str, state: str) -> Experiment:
    data = entry.get("data") or {}
    params: dict[str, Any] = {}
    for values in (data.get("params") or {}).values():
        params.update(flatten(values.get("data") or {}))
    metrics: dict[str, Any] = {}
    for path, values in (data.get("metrics") or {}).items():
        metrics.update(flatten(values.get("data") or {}, f"{PurePosixPath(path).stem}."))
    return Experiment(name, entry["rev"], state, params, metrics)


def parse_show(shown: list[dict[str, Any]]) -> tuple[Experiment | None, list[Experiment]]:
    """The commit and its experiments from ``dvc exp show --json`` (the workspace is left out).

    Returns:
        The baseline commit (None when the repository has no commit) and its experiments,
        in DVC's order (newest first), queued, running and failed ones included.
    """
    baseline: Experiment | None = None
    experiments: list[Experiment] = []
    for commit in shown:
        if commit["rev"] == "workspace":
            continue
        baseline = _row(commit, commit.get("name") or commit["rev"][:7], SUCCESS)
        for experiment in commit.get("experiments") or []:
            executor = experiment.get("executor") or {}
            state = executor.get("state") or SUCCESS
            latest = experiment["revs"][0]
            experiments.append(_row(latest, experiment.get("name") or latest["rev"][:7], state))
    return baseline, experiments


def show(
    cwd: Path, attempts: int = 4, timeout: float = 120.0
) -> tuple[Experiment | None, list[Experiment]]:
    """Ask DVC for the experiments of the commit checked out in ``cwd``.

    While the queue runs, ``dvc exp show`` sometimes fails on an experiment's temporary copy
    that a worker is creating or deleting at that moment ("directory .../.dvc/tmp/exps/tmp.../.dvc
    does not exist"), or hangs for good: pygit2 1.21's blob reader waits forever when its
    reading thread dies because that copy's pack file was deleted (seen 2026-12-03, a
    single-threaded `dvc exp show` in ``_BlobIO.readinto``). It is killed after ``timeout``
    seconds and, like a failure, asked again a few seconds later before giving up.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = run_dvc(["exp", "show", "--json"], cwd, timeout=timeout)
            break
        except PipelineError:
            if attempt == attempts:
                raise
            time.sleep(2.0 * attempt)
    return parse_show(json.loads(result.stdout or "[]"))
