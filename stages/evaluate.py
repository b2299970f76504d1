"""Evaluate stage: test-set accuracy and loss, per-class metrics, confusion matrix, errors.

The only stage (with visualize) that reads the test set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, classification_report

from stages import tracking
from stages.arrays import Split, load_split
from stages.atomic import atomic_path, write_json
from stages.errors import run_stage
from stages.figures import image_grid, save_figure
from stages.models import load_model, logit_loss_and_accuracy, predict_logits
from stages.params import load_params


def test_metrics(split: Split, logits: np.ndarray) -> dict:
    """Accuracy, mean cross-entropy and per-class precision / recall / F1 (by class name)."""
    predicted = logits.argmax(axis=1)
    loss, accuracy = logit_loss_and_accuracy(logits, split.y)
    report = classification_report(
        split.labels,
        predicted,
        labels=range(len(split.class_names)),
        target_names=split.class_names,
        output_dict=True,
        zero_division=0,
    )
    per_class = {
        name: {key: round(report[name][key], 6) for key in ("precision", "recall", "f1-score")}
        for name in split.class_names
    }
    return {
        "accuracy": accuracy,
        "loss": loss,
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "per_class": per_class,
    }


def confusion_table(split: Split, logits: np.ndarray) -> pd.DataFrame:
    """One ``actual,predicted`` row per test image, by class name (DVC's confusion template)."""
    names = np.array(split.class_names)
    return pd.DataFrame({"actual": names[split.labels], "predicted": names[logits.argmax(1)]})


def confusion_figure(split: Split, logits: np.ndarray) -> Figure:
    """The confusion matrix with annotated counts."""
    figure = Figure(figsize=(8, 7), layout="constrained")
    axis = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        split.labels,
        logits.argmax(axis=1),
        labels=range(len(split.class_names)),
        display_labels=split.class_names,
        ax=axis,
        colorbar=False,
        xticks_rotation=45,
        cmap="Blues",
    )
    accuracy = np.mean(logits.argmax(axis=1) == split.labels)
    axis.set_title(f"Confusion matrix, test set ({len(split.labels)} images, {accuracy:.2%})")
    return figure


def errors_figure(split: Split, logits: np.ndarray, count: int) -> Figure:
    """The first ``count`` misclassified test images with true and predicted labels."""
    predicted = logits.argmax(axis=1)
    wrong = np.flatnonzero(predicted != split.labels)[:count]
    names = split.class_names
    titles = [f"#{i}: {names[split.labels[i]]}\nas {names[predicted[i]]}" for i in wrong]
    title = (
        f"Misclassified test images (first {len(wrong)} of {np.sum(predicted != split.labels)})"
    )
    return image_grid(split.x[wrong], titles, columns=6, title=title, cell_inches=1.5)


def main(argv: list[str] | None = None) -> None:
    """Evaluate ``--model`` on the test split; write metrics and plots; log them to its run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--run", type=Path, default=tracking.RUN_FILE)
    parser.add_argument("--test", type=Path, default=Path("data/processed/test.npz"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--plots", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    loaded = load_params(args.params, sections=("evaluate", "tracking"))
    params = loaded.evaluate

    with tracking.model_run(loaded.tracking, args.run) as run:
        model = load_model(args.model)
        split = load_split(args.test)
        logits = predict_logits(model, split.x, params.batch_size)
        metrics = test_metrics(split, logits)

        write_json(args.metrics, metrics)
        with atomic_path(args.plots / "confusion.csv") as temporary:
            confusion_table(split, logits).to_csv(temporary, index=False)
        save_figure(confusion_figure(split, logits), args.plots / "confusion.png")
        save_figure(errors_figure(split, logits, params.error_examples), args.plots / "errors.png")

        run.log_params(loaded, ("evaluate",))
        run.log_data({"test": args.test})
        run.log_metrics(metrics, prefix="test/")
        run.log_files(
            args.metrics,
            *(args.plots / name for name in ("confusion.csv", "confusion.png", "errors.png")),
        )
    print(
        f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"on {len(split.labels)} images -> {args.metrics}\n{run}"
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
