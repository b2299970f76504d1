"""The metric gate, on two commits of a tiny DVC repository whose metrics files differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.makeruns import make_calls
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from review.dvcdata import Change
from review.gate import judge, report_line

ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO_ROOT),
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def run(root: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def write_metrics(root: Path, values: dict) -> None:
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "eval.json").write_text(json.dumps(values))


@pytest.fixture
def repository(tmp_path) -> Path:
    """A git + DVC repository: ``main`` has eval.accuracy 0.91; ``feature`` is checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    run(root, "git", "init", "-q", "-b", "main")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "dvc.yaml").write_text("metrics:\n  - metrics/eval.json\n")
    write_metrics(root, {"accuracy": 0.91, "loss": 0.3})
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "base")
    run(root, "git", "checkout", "-q", "-b", "feature")  # later commits: the pull request
    return root


def gate(root: Path, *extra: str, base: str = "main") -> subprocess.CompletedProcess:
    return run(root, sys.executable, "-m", "review.gate", "--base", base, *extra, check=False)


@pytest.mark.slow
def test_a_drop_within_the_allowance_passes_and_a_larger_one_fails(repository):
    write_metrics(repository, {"accuracy": 0.9077, "loss": 0.31})  # fell 0.0023
    run(repository, "git", "commit", "-qam", "slightly worse")
    passed = gate(repository)
    assert passed.returncode == 0, passed.stderr
    assert "within the allowed drop" in passed.stdout

    write_metrics(repository, {"accuracy": 0.8977, "loss": 0.35})  # uncommitted: fell 0.0123
    failed = gate(repository)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "error: eval.accuracy fell 0.0123 (0.9100 -> 0.8977); allowed drop 0.005"
    )
    # The allowance is settable.
    assert gate(repository, "--allowed-drop", "0.02").returncode == 0


@pytest.mark.slow
def test_a_missing_metric_on_either_side_is_named(repository):
    write_metrics(repository, {"loss": 0.3})
    missing_here = gate(repository)
    assert missing_here.returncode == 1
    assert "error: eval.accuracy is missing in workspace (metrics/eval.json" in missing_here.stderr

    run(repository, "git", "commit", "-qam", "no accuracy")
    write_metrics(repository, {"accuracy": 0.9, "loss": 0.3})
    missing_there = gate(repository, "--allowed-drop", "1", base="HEAD")
    assert missing_there.returncode == 1
    assert "error: eval.accuracy is missing in HEAD (metrics/eval.json" in missing_there.stderr


def test_the_verdict_line_heads_the_report():
    worse = [Change("metrics/eval.json", "accuracy", 0.91, 0.89, -0.02)]
    line = report_line(judge(worse, "main", 0.005))
    assert line == (
        "🔴 **Metric gate failed**: eval.accuracy fell 0.0200 (0.9100 -> 0.8900); "
        "allowed drop 0.005."
    )
    better = [Change("metrics/eval.json", "accuracy", 0.89, 0.91, 0.02)]
    assert report_line(judge(better, "main", 0.005)).startswith("🟢 **Metric gate passed**")

    from review.dvcdata import Plots
    from review.report import Review, render
    from review.status import PipelineStatus

    review = Review("main", [], worse, Plots([], {}), PipelineStatus(True, [], {}, ""))
    assert render(review, [], "report").splitlines()[0] == line


def test_the_workflow_runs_the_gate_after_posting_the_report(tmp_path):
    workflow = YAML(typ="safe", pure=True).load(
        (REPO_ROOT / ".github" / "workflows" / "review.yml").read_text()
    )
    job = workflow["jobs"]["review"]
    assert float(job["env"]["ALLOWED_DROP"]) == 0.005
    runs = [step.get("run", "") for step in job["steps"]]
    posted = next(i for i, command in enumerate(runs) if command.startswith("cml comment"))
    assert runs.index('make check-metrics BASE="$TARGET"') > posted
    calls = make_calls("check-metrics", ["BASE=feature", "ALLOWED_DROP=0.01"], tmp_path)
    (words,) = [call for call in calls if "review.gate" in call]
    assert words[1:] == ["-m", "review.gate", "--base", "feature", "--allowed-drop", "0.01"]
