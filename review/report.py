"""Pull-request review report: params, metrics and plots of the workspace against BASE.

    python -m review.report --base main --out report.md      # or: make report BASE=main

Writes ``report.md`` and the images it links to in ``report/`` beside it. The data comes
from ``dvc params diff``, ``dvc metrics diff`` and ``dvc plots diff``; the pictures are drawn
here from the committed plot data, so no DVC remote is needed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from digits.figures.drawing import save_figure
from digits.runtime.atomic import atomic_open
from digits.runtime.stopping import run_stage
from digits.tracking.committed import uncommitted_hint
from review import markdown
from review.dvcdata import (
    PER_CLASS_FILE,
    WORKSPACE,
    Change,
    Plots,
    check_revision,
    metric_changes,
    param_changes,
    plot_data,
    same_commit_note,
)
from review.figures import confusion_counts, confusion_figure, curve_figure
from review.gate import DEFAULT_ALLOWED_DROP, allowed_drop_value, judge, report_line
from review.status import PipelineStatus, describe, pipeline_status

HEADLINE = ("metrics/eval.json", "accuracy")  # test accuracy: the number reviewers look for
# Before per-class scores had a file of their own, eval.json held per_class.<class>.<metric>;
# a BASE from then still compares with the workspace.
LEGACY_PER_CLASS = "per_class."


@dataclass(frozen=True)
class Review:
    """Everything the report shows, gathered from DVC."""

    base: str
    params: list[Change]
    metrics: list[Change]
    plots: Plots
    status: PipelineStatus
    allowed_drop: float = DEFAULT_ALLOWED_DROP  # the metric gate's (review.gate)


def gather(base: str, cwd: Path, allowed_drop: float = DEFAULT_ALLOWED_DROP) -> Review:
    """Ask git and DVC about BASE and the workspace in ``cwd``."""
    check_revision(base, cwd)
    return Review(
        base,
        param_changes(base, cwd),
        metric_changes(base, cwd),
        plot_data(base, cwd),
        pipeline_status(cwd),
        allowed_drop,
    )


def split_per_class(metrics: list[Change]) -> tuple[list[Change], dict[str, dict[str, Change]]]:
    """Metrics without per-class ones, and per-class ones as ``{class: {metric: change}}``.

    Per-class scores come from ``metrics/per_class.json`` (keys ``<class>.<metric>``) or, in
    an older revision, from ``per_class.<class>.<metric>`` of eval.json; the two halves of a
    class compared across that change are joined into one change.
    """
    overall, by_class = [], {}
    for change in metrics:
        if change.path == PER_CLASS_FILE:
            key = change.key
        elif change.key.startswith(LEGACY_PER_CLASS):
            key = change.key.removeprefix(LEGACY_PER_CLASS)
        else:
            overall.append(change)
            continue
        name, metric = key.rsplit(".", 1)
        known = by_class.setdefault(name, {}).get(metric)
        if known is not None:
            old = known.old if known.old is not None else change.old
            new = known.new if known.new is not None else change.new
            both = old is not None and new is not None
            change = Change(PER_CLASS_FILE, key, old, new, new - old if both else None)
        by_class[name][metric] = change
    return overall, by_class


def write_images(review: Review, folder: Path) -> list[tuple[str, str]]:
    """Draw the curves and confusion matrices into ``folder``; return (title, file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # a chart the data no longer has must not linger
        stale.unlink()
    revisions = [review.base, WORKSPACE]
    images = []
    for curve in review.plots.curves:
        file_name = re.sub(r"[^\w-]+", "_", curve.name) + ".png"
        save_figure(curve_figure(curve, revisions), folder / file_name)
        images.append((curve.title, file_name))
    confusion = review.plots.confusion
    if confusion:
        _, by_class = split_per_class(review.metrics)
        seen = {
            name for rows in confusion.values() for name in rows[["actual", "predicted"]].stack()
        }
        classes = [name for name in by_class if name in seen] + sorted(seen - set(by_class))
        matrices = {
            rev: confusion_counts(confusion[rev], classes) for rev in revisions if rev in confusion
        }
        save_figure(confusion_figure(matrices, classes), folder / "confusion.png")
        images.append(("Confusion matrices", "confusion.png"))
    return images


def headline(review: Review) -> str:
    """The test accuracy line, or why there is nothing to compare."""
    found = [c for c in review.metrics if (c.path, c.key) == HEADLINE]
    if not found:
        return f"No `{HEADLINE[1]}` in `{HEADLINE[0]}`: run the pipeline and commit its metrics."
    change = found[0]
    old, new, delta = markdown.numbers(change)
    text = f"**Test accuracy {new}**"
    if change.old is None:
        return f"{text}. `{review.base}` has no metrics: nothing to compare against."
    return f"{text} (`{review.base}`: {old}, Δ {delta}) {markdown.verdict(change)}"


def render(review: Review, images: list[tuple[str, str]], image_folder: str) -> str:
    """The report as Markdown, linking ``images`` under ``image_folder``."""
    base = review.base
    overall, by_class = split_per_class(review.metrics)
    top = [c for c in overall if (c.path, c.key) == HEADLINE]
    changed = top + [c for c in overall if c.old != c.new and c not in top]
    unchanged = [c for c in overall if c not in changed]
    gate = report_line(judge(review.metrics, base, review.allowed_drop))  # the first line
    parts = [
        gate,
        f"## Model review: workspace vs `{base}`",
        describe(review.status),
        headline(review),
    ]
    parts += ["### Params", markdown.param_table(review.params, base) or "No params changed."]
    metrics = markdown.metric_table(changed, base, bold=top[0] if top else None)
    parts += ["### Metrics", metrics or "No metrics in either revision."]
    if unchanged:
        table = markdown.metric_table(unchanged, base)
        parts.append(markdown.details(f"Unchanged metrics ({len(unchanged)})", table))
    if by_class:
        parts += [
            "### Per-class F1 (test set)",
            markdown.per_class_table(by_class, ["f1-score"], base),
        ]
        table = markdown.per_class_table(by_class, ["precision", "recall"], base)
        parts.append(markdown.details("Per-class precision and recall", table))
    if images:
        links = [f"![{title}]({image_folder}/{name})" for title, name in images]
        parts += ["### Plots", "\n".join(links)]
    parts.append(
        f"<sub>Δ = workspace - `{base}`. {markdown.WORSE} / {markdown.BETTER}: higher is better "
        "for accuracy, F1, precision and recall, lower for loss; time, speed, sizes and counts "
        "are not judged. Data from `dvc params diff`, `dvc metrics diff` and "
        "`dvc plots diff`.</sub>"
    )
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Compare the workspace with ``--base`` and write ``--out`` and its images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--out", type=Path, default=Path("report.md"))
    parser.add_argument(
        "--allowed-drop",
        type=allowed_drop_value,
        default=DEFAULT_ALLOWED_DROP,
        help="the metric gate's allowed fall of test accuracy (make check-metrics)",
    )
    args = parser.parse_args(argv)

    check_revision(args.base, Path.cwd())  # before the hint, which takes any name for a commit
    hint = uncommitted_hint(args.base, Path.cwd())
    if hint:
        print(hint)
    review = gather(args.base, Path.cwd(), args.allowed_drop)
    note = same_commit_note(args.base, Path.cwd())
    if note:
        print(note)
    image_folder = args.out.parent / args.out.stem  # report.md -> report/
    images = write_images(review, image_folder)
    with atomic_open(args.out) as stream:
        stream.write(render(review, images, image_folder.name))
    state = "up to date" if review.status.up_to_date else "NOT up to date"
    print(f"{args.out}: workspace vs {args.base}, {len(images)} images, pipeline {state}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
