"""What DVC says about two revisions: metric, param and plot diffs as plain Python data.

Every number comes from ``dvc metrics diff``, ``dvc params diff`` and ``dvc plots diff``
(``--json``); this module only reshapes their output for the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from digits.errors import PipelineError

WORKSPACE = "workspace"  # the name DVC gives the working tree in its diffs
# Evaluate's per-class table: a plain JSON file, not a DVC metric (30 columns would flood
# `dvc exp show`), which `dvc metrics diff --targets` still reads.
PER_CLASS_FILE = "metrics/per_class.json"
# Train's training-set scores, model size and timings: a plain JSON file for the same reason
# (facts of the run).
TRAIN_RUN_FILE = "metrics/train_run.json"


@dataclass(frozen=True)
class Change:
    """One metric or param in BASE (``old``) and the workspace (``new``); None where absent."""

    path: str  # the file DVC read, e.g. metrics/eval.json
    key: str  # DVC's dotted key, e.g. Coat.f1-score
    old: object
    new: object
    diff: float | int | None  # DVC's new - old, None unless both are numbers


@dataclass(frozen=True)
class Curve:
    """One line chart of ``dvc plots diff``: y values by revision and field, against ``x``."""

    name: str
    title: str
    x: str
    points: pd.DataFrame  # columns rev, field, x, y; x and y float


@dataclass(frozen=True)
class Plots:
    """The plot data of both revisions: line charts and confusion rows by revision."""

    curves: list[Curve]
    confusion: dict[str, pd.DataFrame]  # revision -> one (actual, predicted) row per image


def run_dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``dvc <args>`` with this interpreter's DVC in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True
    )


def dvc_json(args: list[str], cwd: Path) -> dict:
    """Run a ``dvc ... --json`` command and parse its output; raise if DVC fails."""
    result = run_dvc([*args, "--json"], cwd)
    if result.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout or "{}")


def check_revision(base: str, cwd: Path) -> None:
    """Raise unless ``base`` names a commit (branch, tag, sha, ``HEAD~1`` ...) of the repo."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise PipelineError(
            f"BASE {base!r} is not a commit, branch or tag of the git repository in {cwd}; "
            "check the name (`git branch -a`) or fetch it (in CI: checkout with fetch-depth: 0)"
        )


def same_commit_note(base: str, cwd: Path) -> str | None:
    """A line saying that ``base`` is the commit checked out, so the review shows only what is
    not committed yet (a change committed on ``main`` itself, reviewed with ``BASE=main``);
    None when ``base`` is another commit."""
    commits = [
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for revision in (base, "HEAD")
    ]
    if not commits[0] or commits[0] != commits[1]:
        return None
    return (
        f"note: BASE {base!r} is the commit checked out (HEAD), so the review shows only "
        "uncommitted changes; to review committed work, make the change on a branch "
        "(git switch -c <name>) and compare with main, or compare with the commit before it "
        "(BASE=HEAD~1)"
    )


def flat_keys(tree: dict, prefix: str = "") -> Iterator[str]:
    """Dotted keys of a nested dict in file order, as DVC names them."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flat_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def changes_from(diff: dict, cwd: Path) -> list[Change]:
    """Flatten DVC's ``{path: {key: {old, new, diff}}}`` into changes.

    DVC lists keys in no fixed order; sort them by file, then as the workspace file lists
    them (so per-class rows keep the dataset's class order), then by name.
    """
    changes = []
    for path, entries in sorted(diff.items()):
        workspace_file = cwd / path
        order: dict[str, int] = {}
        if workspace_file.suffix == ".json" and workspace_file.is_file():
            order = {
                key: i for i, key in enumerate(flat_keys(json.loads(workspace_file.read_text())))
            }
        for key in sorted(entries, key=lambda key: (order.get(key, len(order)), key)):
            entry = entries[key]
            changes.append(
                Change(path, key, entry.get("old"), entry.get("new"), entry.get("diff"))
            )
    return changes


def metric_changes(base: str, cwd: Path) -> list[Change]:
    """Every metric of BASE and the workspace (``dvc metrics diff --all``), then the
    per-class table and train's run facts (``--targets`` those files)."""
    headline = dvc_json(["metrics", "diff", base, "--all"], cwd)
    tables = [PER_CLASS_FILE, TRAIN_RUN_FILE]
    beside = dvc_json(["metrics", "diff", base, "--all", "--targets", *tables], cwd)
    return changes_from(headline, cwd) + changes_from(beside, cwd)


def param_changes(base: str, cwd: Path) -> list[Change]:
    """The params that differ between BASE and the workspace (``dvc params diff``)."""
    return changes_from(dvc_json(["params", "diff", base], cwd), cwd)


def plot_data(base: str, cwd: Path) -> Plots:
    """Line charts and confusion rows of BASE and the workspace (``dvc plots diff``).

    Image plots (PNG outputs in the DVC cache) are skipped: CI without a DVC remote does
    not have them, and the report draws its own pictures from the data.
    """
    with tempfile.TemporaryDirectory() as scratch:  # DVC also renders HTML into --out
        shown = dvc_json(["plots", "diff", base, "--out", scratch], cwd)
    curves, confusion = [], {}
    for name, entries in shown.get("data", {}).items():
        for entry in entries:
            if entry.get("type") != "vega" or not entry["content"]["data"]["values"]:
                continue
            content = entry["content"]
            rows = pd.DataFrame(content["data"]["values"])
            title = content.get("title", {}).get("text", name)
            if "dvc_inferred_y_value" in rows:  # linear-style templates: one y per row
                x = content["encoding"]["x"]["field"]
                points = rows[["rev", "field", x, "dvc_inferred_y_value"]].set_axis(
                    ["rev", "field", "x", "y"], axis="columns"
                )
                points[["x", "y"]] = points[["x", "y"]].astype(float)
                curves.append(Curve(name, title, x, points))
            elif "facet" in content:  # confusion templates: one panel per revision
                encoding = content["spec"]["encoding"]
                pairs = rows[["rev", encoding["y"]["field"], encoding["x"]["field"]]]
                pairs.columns = ["rev", "actual", "predicted"]
                for rev, group in pairs.groupby("rev", sort=False):
                    confusion[rev] = group[["actual", "predicted"]].reset_index(drop=True)
    return Plots(curves, confusion)
