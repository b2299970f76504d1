"""A training run's history: one row per evaluation, what it decides and what it prints.

A row is the step, ``HISTORY_METRICS`` and the seconds since training started (a row of
``plots/train_history.csv``). Early stopping reads the rows (``best_row``,
``patience_exhausted``); the train stage prints each as one progress line, logs its metrics to
MLflow at its step, and ends with where early stopping ended. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from digits.params import TrainParams

HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
HISTORY_COLUMNS = ["step", *HISTORY_METRICS, "seconds"]


def best_row(rows: list[dict]) -> int:
    """Index of the evaluation with the lowest ``val_loss`` (the first, on a tie)."""
    return min(range(len(rows)), key=lambda index: rows[index]["val_loss"])


def patience_exhausted(rows: list[dict], patience: int) -> bool:
    """True when the last ``patience`` evaluations all failed to lower ``val_loss``."""
    return patience > 0 and bool(rows) and len(rows) - 1 - best_row(rows) >= patience


def logged_metrics(row: dict) -> dict[str, float]:
    """The metrics of a history row that MLflow gets at its step."""
    return {name: row[name] for name in HISTORY_METRICS}


def progress_line(total_steps: int) -> Callable[[dict], str]:
    """A function that formats a history row as one progress line, aligned for ``total_steps``."""
    width = len(str(total_steps))

    def line(row: dict) -> str:
        return (
            f"step {row['step']:>{width}}/{total_steps}  "
            f"loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  "
            f"{row['seconds']:.1f}s"
        )

    return line


def stop_lines(metrics: dict[str, Any], params: TrainParams) -> list[str]:
    """Where early stopping ended training and which weights were kept (maybe nothing)."""
    lines = []
    if metrics["stopped_step"] < params.steps:
        lines.append(
            f"early stopping at step {metrics['stopped_step']}: val_loss has not improved "
            f"for {params.patience} evaluations since step {metrics['best_step']}"
        )
    if params.restore_best_weights:
        lines.append(f"kept the weights of step {metrics['best_step']} (lowest val_loss)")
    return lines
