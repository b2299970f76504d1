"""Rank the experiments of the current commit on a validation metric; apply the winner if asked.

    python -m search.best --metric train.val_accuracy [--apply]     (make best METRIC=...)

Ranking is on validation only: a metric of the test set (``eval.*``) is refused, because
choosing the model by its test score tunes on the test set, and that score then overstates
what the model does on new data. Test accuracy is shown beside each row, for information.

The commit the experiments started from (the baseline) is ranked with them, in a row marked
``base``: an experiment is recommended, and applied, only when it beats the baseline.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digits.errors import PipelineError
from digits.runtime.stopping import run_stage
from digits.tracking.committed import COMMIT_COMMAND, uncommitted_hint
from search.experiments import SUCCESS, Experiment, run_dvc, show
from search.space import TEST_METRIC_PREFIXES

TEST_ACCURACY = "eval.accuracy"
# Numbers that describe a run, not how good its model is: never offered for ranking.
# (Training-set scores, model size and timings are in metrics/train_run.json, not a DVC metric.)
NOT_SCORES = ("data.", "train.steps", "train.best_step", "train.stopped_step")


def lower_is_better(metric: str) -> bool:
    """Losses are minimised; accuracies, F1 and the rest maximised."""
    return metric.rsplit(".", 1)[-1].endswith("loss")


def rankable_metrics(experiments: Sequence[Experiment]) -> list[str]:
    """The numeric validation metrics that finished experiments wrote, sorted."""
    names = {
        name
        for experiment in experiments
        for name, value in experiment.metrics.items()
        if _is_number(value)
        and not name.startswith(TEST_METRIC_PREFIXES)
        and not name.startswith(NOT_SCORES)
    }
    return sorted(names)


def rank(experiments: Sequence[Experiment], metric: str) -> list[Experiment]:
    """Finished experiments that have ``metric``, best first.

    Raises:
        PipelineError: ``metric`` is a test-set metric, or no finished experiment has it
            (the message lists the metrics that exist).
    """
    if metric.startswith(TEST_METRIC_PREFIXES):
        raise PipelineError(
            f"{metric} is measured on the test set: ranking on it would tune the model on the "
            "test set; rank on a validation metric such as train.val_accuracy"
        )
    finished = [experiment for experiment in experiments if experiment.state == SUCCESS]
    scored = [experiment for experiment in finished if _is_number(experiment.metrics.get(metric))]
    if not scored:
        known = ", ".join(rankable_metrics(finished)) or "none"
        raise PipelineError(
            f"no experiment has the metric {metric!r}; metrics that exist: {known}"
        )
    sign = 1 if lower_is_better(metric) else -1
    return sorted(scored, key=lambda experiment: sign * experiment.metrics[metric])


def beats(experiment: Experiment, baseline: Experiment | None, metric: str) -> bool:
    """Whether ``experiment`` is strictly better than ``baseline`` on ``metric``; True when
    the baseline has no figure for it (nothing to beat)."""
    if baseline is None or not _is_number(baseline.metrics.get(metric)):
        return True
    ours, theirs = experiment.metrics[metric], baseline.metrics[metric]
    return ours < theirs if lower_is_better(metric) else ours > theirs


def recommend(
    ranked: Sequence[Experiment], baseline: Experiment | None, metric: str
) -> tuple[Experiment | None, str]:
    """The experiment to apply (None: none beats the baseline) and a line saying why."""
    winner = ranked[0]
    apply = f"`make best APPLY=1` (dvc exp apply {winner.name}) applies it"
    if baseline is None:
        return winner, f"best: {winner.name}; {apply}"
    if not _is_number(baseline.metrics.get(metric)):
        return winner, (
            f"best: {winner.name}; {apply}. The baseline {baseline.name} has no {metric}: "
            f"its results are not committed (after `dvc repro`: {COMMIT_COMMAND})"
        )
    score = _format(baseline.metrics[metric])
    if not beats(winner, baseline, metric):
        return None, (
            f"no experiment beats the baseline {baseline.name} ({metric} {score}): "
            "keep the commit's model"
        )
    return (
        winner,
        f"best: {winner.name}, better than the baseline {baseline.name} ({score}); {apply}",
    )


def differing_params(experiments: Sequence[Experiment]) -> list[str]:
    """Param keys whose values are not the same in every experiment, in params.yaml order."""
    keys: list[str] = []
    for experiment in experiments:
        keys.extend(key for key in experiment.params if key not in keys)
    return [
        key
        for key in keys
        if len({repr(experiment.params.get(key)) for experiment in experiments}) > 1
    ]


def table(ranked: Sequence[Experiment], metric: str, baseline: Experiment | None = None) -> str:
    """A plain-text table: rank, name, the params that differ, the metric, test accuracy.

    ``baseline`` (the commit) is a row marked ``base``, below the experiments that beat it.
    """
    places = [(str(place), experiment) for place, experiment in enumerate(ranked, start=1)]
    if baseline is not None:
        above = sum(beats(experiment, baseline, metric) for experiment in ranked)
        if not _is_number(baseline.metrics.get(metric)):
            above = len(ranked)  # no figure: listed last
        places.insert(above, ("base", baseline))
    params = differing_params([experiment for _, experiment in places])
    header = ["#", "experiment", *params, metric, f"{TEST_ACCURACY} (info)"]
    rows = [
        [
            place,
            experiment.name,
            *(_format(experiment.params.get(key)) for key in params),
            _format(experiment.metrics.get(metric)),
            _format(experiment.metrics.get(TEST_ACCURACY)),
        ]
        for place, experiment in places
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """Print the ranking of the current commit's experiments; ``--apply`` the winner."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", default="train.val_accuracy", help="a validation metric")
    parser.add_argument("--apply", action="store_true", help="dvc exp apply the winner")
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    hint = uncommitted_hint("HEAD", args.repo)
    if hint:
        print(hint)
    baseline, experiments = show(args.repo)
    if not experiments:
        commit = f"commit {baseline.rev[:7]}" if baseline else "the workspace (no commit yet)"
        print(
            f"no experiments of {commit} to rank: run some with `dvc exp run` (docs: Experiments)"
        )
        return
    ranked = rank(experiments, args.metric)
    print(table(ranked, args.metric, baseline))
    unfinished = len(experiments) - len(ranked)
    if unfinished:
        print(f"({unfinished} experiment(s) not ranked: queued, running, failed or without it)")
    winner, verdict = recommend(ranked, baseline, args.metric)
    print(verdict)
    if winner is not None and args.apply:
        run_dvc(["exp", "apply", winner.name], args.repo)
        print(f"applied {winner.name}: the workspace now holds its params, metrics and outputs")
    elif args.apply:
        print("nothing applied")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
