"""The metric gate of a pull request: fail when test accuracy fell by more than allowed.

    python -m review.gate --base main --allowed-drop 0.005     # or: make check-metrics BASE=main

Compares ``eval.accuracy`` (``metrics/eval.json``, key ``accuracy``) of the workspace with
BASE through ``dvc metrics diff``. Passes when it fell by at most the allowed drop (or rose);
fails with one line such as
``error: eval.accuracy fell 0.0123 (0.9100 -> 0.8977); allowed drop 0.005``, and when either
revision lacks the metric. When BASE holds no pipeline results at all (nothing committed
yet) the line says what to commit and how (``digits.tracking.committed``). The report
(``review.report``) states the same verdict first.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.stopping import run_stage
from digits.tracking.committed import uncommitted_hint
from review.dvcdata import WORKSPACE, Change, check_revision, metric_changes

METRIC = ("metrics/eval.json", "accuracy")
METRIC_NAME = "eval.accuracy"  # as the report names it: the file's stem, then DVC's key
DEFAULT_ALLOWED_DROP = 0.005


@dataclass(frozen=True)
class Verdict:
    """Whether the gate passes, and one line that says why."""

    passed: bool
    message: str


def judge(changes: list[Change], base: str, allowed_drop: float) -> Verdict:
    """The gate's verdict on ``dvc metrics diff``'s changes between ``base`` and the workspace."""
    found = [change for change in changes if (change.path, change.key) == METRIC]
    change = found[0] if found else None
    missing = [
        revision
        for revision, value in ((base, change and change.old), (WORKSPACE, change and change.new))
        if not isinstance(value, int | float) or isinstance(value, bool)
    ]
    if missing:
        return Verdict(
            False,
            f"{METRIC_NAME} is missing in {' and '.join(missing)} ({METRIC[0]}, key "
            f"{METRIC[1]!r}): run the pipeline and commit its metrics",
        )
    drop = change.old - change.new
    figures = f"({change.old:.4f} -> {change.new:.4f}); allowed drop {allowed_drop:g}"
    if drop > allowed_drop:
        return Verdict(False, f"{METRIC_NAME} fell {drop:.4f} {figures}")
    if drop > 0:
        return Verdict(True, f"{METRIC_NAME} fell {drop:.4f}, within the allowed drop {figures}")
    return Verdict(True, f"{METRIC_NAME} did not fall {figures}")


def gate(base: str, cwd: Path, allowed_drop: float) -> Verdict:
    """Ask DVC for the metrics of ``base`` and the workspace in ``cwd``, and judge them.

    A ``base`` without committed results fails with the line that says what to commit.
    """
    check_revision(base, cwd)
    hint = uncommitted_hint(base, cwd)
    if hint:
        return Verdict(False, hint)
    return judge(metric_changes(base, cwd), base, allowed_drop)


def report_line(verdict: Verdict) -> str:
    """The verdict as the report's first line (Markdown)."""
    if verdict.passed:
        return f"🟢 **Metric gate passed**: {verdict.message}."
    return f"🔴 **Metric gate failed**: {verdict.message}."


def allowed_drop_value(text: str) -> float:
    """``--allowed-drop``: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..1 (a drop in accuracy)")
    return value


def main(argv: list[str] | None = None) -> None:
    """Print the verdict; exit 1 with one ``error:`` line when the gate fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument(
        "--allowed-drop",
        type=allowed_drop_value,
        default=DEFAULT_ALLOWED_DROP,
        help=f"largest fall of {METRIC_NAME} that passes (default {DEFAULT_ALLOWED_DROP})",
    )
    args = parser.parse_args(argv)
    verdict = gate(args.base, Path.cwd(), args.allowed_drop)
    if not verdict.passed:
        raise PipelineError(verdict.message)
    print(f"metric gate passed: {verdict.message}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
