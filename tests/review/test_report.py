"""The review report, end to end: a project copy with two commits of fabricated metric and
plot data (no training), compared by ``python -m review.report`` through DVC."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers.makeruns import make_calls
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from review.dvcdata import PER_CLASS_FILE, Change
from review.report import split_per_class

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["zero", "one", "two"]


def write_run(root: Path, accuracy: float, loss: float, f1: list[float], seconds: float) -> None:
    """Fabricate what train and evaluate commit: metrics JSON, per-class and run facts JSON,
    plot CSVs."""
    (root / "metrics").mkdir(exist_ok=True)
    (root / "plots").mkdir(exist_ok=True)
    per_class = {
        name: {"precision": score, "recall": score, "f1-score": score}
        for name, score in zip(CLASSES, f1, strict=True)
    }
    evaluation = {"accuracy": accuracy, "loss": loss, "macro_f1": sum(f1) / 3}
    (root / "metrics" / "per_class.json").write_text(json.dumps(per_class))
    training = {"val_loss": loss + 0.1, "val_accuracy": accuracy + 0.01}
    run_facts = {"parameters": 1000, "training_seconds": seconds}
    (root / "metrics" / "eval.json").write_text(json.dumps(evaluation))
    (root / "metrics" / "train.json").write_text(json.dumps(training))
    (root / "metrics" / "train_run.json").write_text(json.dumps(run_facts))
    (root / "metrics" / "data.json").write_text(json.dumps({"train_images": 100}))
    history = pd.DataFrame({
        "step": [10, 20], "seconds": [1.0, seconds],
        "train_loss": [2 * loss, loss], "train_accuracy": [accuracy / 2, accuracy],
        "val_loss": [2, loss], "val_accuracy": [0.5, accuracy],
    })  # fmt: skip
    history.to_csv(root / "plots" / "train_history.csv", index=False)
    # 10 images: the first `right` on the diagonal, the rest predicted as the next class.
    right = round(accuracy * 10)
    actual = [CLASSES[k % 3] for k in range(10)]
    predicted = [a if k < right else CLASSES[(k + 1) % 3] for k, a in enumerate(actual)]
    pd.DataFrame({"actual": actual, "predicted": predicted}).to_csv(
        root / "plots" / "confusion.csv", index=False
    )


@pytest.fixture
def revisions(project) -> dict[str, str]:
    """Commits of the project copy: no metrics yet, a baseline, then a worse experiment."""
    shas = {"empty": project.run("git", "rev-parse", "HEAD").stdout.strip()}
    write_run(project.root, accuracy=0.9, loss=0.30, f1=[0.9, 0.8, 0.7], seconds=10.0)
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "baseline")
    shas["baseline"] = project.run("git", "rev-parse", "HEAD").stdout.strip()
    project.set_params({"train": {"fc_size": 256}})
    write_run(project.root, accuracy=0.8, loss=0.25, f1=[0.95, 0.8, 0.6], seconds=12.5)
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "experiment")
    return shas


def test_per_class_scores_from_their_file_and_from_an_older_eval_json_are_joined():
    metrics = [
        Change("metrics/eval.json", "accuracy", 0.5, 0.6, 0.1),
        Change("metrics/eval.json", "per_class.Coat.f1-score", 0.25, None, None),  # older BASE
        Change(PER_CLASS_FILE, "Coat.f1-score", None, 0.75, None),  # workspace
        Change(PER_CLASS_FILE, "Bag.recall", 0.5, 0.5, 0.0),
    ]
    overall, by_class = split_per_class(metrics)
    assert [change.key for change in overall] == ["accuracy"]
    assert list(by_class) == ["Coat", "Bag"]
    coat = by_class["Coat"]["f1-score"]
    assert (coat.old, coat.new, coat.diff) == (0.25, 0.75, 0.5)
    assert by_class["Bag"]["recall"].new == 0.5


def report_row(report: str, label: str) -> list[str]:
    """The cells of the first table row whose first cell is ``label``."""
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0].strip("*`") == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{report}")


@pytest.mark.slow
def test_report_shows_params_metrics_verdicts_and_images(project, revisions):
    project.run("python", "-m", "review.report", "--base", revisions["baseline"])
    report = (project.root / "report.md").read_text()
    base = f"`{revisions['baseline']}`"

    assert report_row(report, "train.fc_size") == ["`train.fc_size`", "128", "256"]
    assert report_row(report, "eval.accuracy") == [
        "**eval.accuracy**", "0.9000", "0.8000", "-0.1000", "🔴 worse"]  # fmt: skip
    assert report_row(report, "eval.loss") == [
        "eval.loss",
        "0.3000",
        "0.2500",
        "-0.0500",
        "🟢 better",
    ]
    # Time, from the run facts beside the metrics, is not judged; DVC rounds nothing away
    # (12.5 - 10.0 exactly).
    assert report_row(report, "train_run.training_seconds") == [
        "train_run.training_seconds", "10.0", "12.5", "+2.5", ""]  # fmt: skip
    assert report_row(report, "two")[1:4] == ["0.7000", "0.6000", "-0.1000 🔴"]
    assert report_row(report, "zero")[1:4] == ["0.9000", "0.9500", "+0.0500 🟢"]
    assert "**Test accuracy 0.8000**" in report and base in report
    # The headline comes first, before any other metric row.
    assert report.index("**eval.accuracy**") < report.index("eval.loss")
    # The copy has no dvc.lock: every stage would run, and the report says so.
    assert "Pipeline not up to date" in report

    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 3  # accuracy and loss curves, confusion matrices
    for link in links:
        assert (project.root / link).read_bytes()[:8] == PNG_SIGNATURE, link


@pytest.mark.slow
def test_base_without_metrics_shows_new_values_and_says_so(project, revisions):
    project.run("python", "-m", "review.report", "--base", revisions["empty"])
    report = (project.root / "report.md").read_text()
    assert "has no metrics: nothing to compare against" in report
    assert report_row(report, "eval.accuracy")[1:4] == ["—", "0.8000", "—"]
    # Nothing to be worse than: no verdicts.
    assert report_row(report, "eval.loss")[1:] == ["—", "0.2500", "—", ""]
    assert report_row(report, "two")[1:] == ["—", "0.6000", "—"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 3  # the workspace's curves and confusion matrix alone
    assert all((project.root / link).read_bytes()[:8] == PNG_SIGNATURE for link in links)


@pytest.mark.slow
def test_unknown_base_is_an_error_naming_it(project):
    result = project.run("python", "-m", "review.report", "--base", "no-such-branch", check=False)
    assert result.returncode != 0
    assert "BASE 'no-such-branch' is not a commit, branch or tag" in result.stderr
    assert not (project.root / "report.md").exists()


def report_commands(text: str) -> list[str]:
    return re.findall(r"make report BASE=\S+", text)


def test_workflow_is_valid_yaml_and_runs_the_documented_make_report(tmp_path):
    workflow = YAML(typ="safe", pure=True).load(
        (REPO_ROOT / ".github" / "workflows" / "review.yml").read_text()
    )
    assert "pull_request" in workflow["on"]
    steps = workflow["jobs"]["review"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the target branch must be there to diff
    runs = [step["run"] for step in steps if "run" in step]
    assert [command for command in runs if command.startswith("make report ")] == [
        'make report BASE="$TARGET"'
    ]
    assert runs.index('make report BASE="$TARGET"') < runs.index("make check-pipeline")
    assert report_commands((REPO_ROOT / "docs" / "team.md").read_text())
    # The Makefile turns BASE into the module's --base.
    (words,) = [call for call in make_calls("report", ["BASE=feature"], tmp_path)
                if "review.report" in call]  # fmt: skip
    assert words[1:5] == ["-m", "review.report", "--base", "feature"]


def test_the_workflow_pins_its_actions_and_leaves_no_token_behind():
    workflow = YAML(typ="safe", pure=True).load(
        (REPO_ROOT / ".github" / "workflows" / "review.yml").read_text()
    )
    steps = workflow["jobs"]["review"]["steps"]
    used = [step["uses"] for step in steps if "uses" in step]
    assert len(used) == 4
    for action in used:
        _, _, reference = action.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", reference), f"{action}: pin a commit SHA"
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
