"""Evaluate stage: test-set accuracy and loss, per-class metrics, confusion matrix, errors.

The only stage (with visualize) that reads the test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digits.data.arrays import Split
from digits.entry import run
from digits.runtime import cli

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    import pandas as pd
    from matplotlib.figure import Figure


def test_metrics(split: Split, logits: np.ndarray) -> tuple[dict, dict]:
    """The headline metrics and the per-class table.

    Returns:
        ``{accuracy, loss, macro_f1}`` (the DVC metrics file) and
        ``{class name: {precision, recall, f1-score}}`` (a file of its own, so that
        ``dvc exp show`` keeps one column per headline number).
    """
    from sklearn.metrics import classification_report

    from digits.model.networks import logit_loss_and_accuracy

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
    headline = {
        "accuracy": accuracy,
        "loss": loss,
        "macro_f1": float(report["macro avg"]["f1-score"]),
    }
    return headline, per_class


def confusion_table(split: Split, logits: np.ndarray) -> pd.DataFrame:
    """One ``actual,predicted`` row per test image, by class name (DVC's confusion template)."""
    import pandas as pd

    names = np.array(split.class_names)
    return pd.DataFrame({"actual": names[split.labels], "predicted": names[logits.argmax(1)]})


def confusion_figure(split: Split, logits: np.ndarray) -> Figure:
    """The confusion matrix with annotated counts."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

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
    from digits.figures.drawing import image_grid

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
    parser = cli.stage_parser(__doc__)
    cli.add_model_and_test_options(parser)
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("metrics/eval.json"),
        help="DVC metrics file: test accuracy, loss and macro F1",
    )
    parser.add_argument(
        "--per-class",
        type=Path,
        default=Path("metrics/per_class.json"),
        help="precision, recall and F1 of each class (JSON)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=Path("plots"),
        help="folder for confusion.csv, confusion.png and errors.png",
    )
    args = parser.parse_args(argv)

    from digits.data.arrays import load_split
    from digits.figures.drawing import write_png
    from digits.model.networks import load_model, predict_logits
    from digits.params import load_params
    from digits.runtime.atomic import Outputs
    from digits.tracking import stage_run

    loaded = load_params(args.params, sections=("evaluate", "tracking"))
    params = loaded.evaluate

    plots = {name: args.plots / name for name in ("confusion.csv", "confusion.png", "errors.png")}
    # Everything is staged and logged before the swap; the run ends after it (FAILED if not).
    outputs = Outputs()
    with stage_run.model_run(loaded.tracking, args.run, outputs) as run:
        model = load_model(args.model)
        split = load_split(args.test)
        logits = predict_logits(model, split.x, params.batch_size)
        metrics, per_class = test_metrics(split, logits)

        outputs.write_json(args.metrics, metrics)
        outputs.write_json(args.per_class, per_class)
        with outputs.file(plots["confusion.csv"]) as temporary:
            confusion_table(split, logits).to_csv(temporary, index=False)
        with outputs.file(plots["confusion.png"]) as temporary:
            write_png(confusion_figure(split, logits), temporary)
        with outputs.file(plots["errors.png"]) as temporary:
            write_png(errors_figure(split, logits, params.error_examples), temporary)

        run.log_params(loaded, ("evaluate",))
        run.log_data({"test": args.test}, splits={"test": split})
        run.log_metrics(metrics, prefix="test/")
        run.log_files(args.metrics, args.per_class, *plots.values(), outputs=outputs)
    print(
        f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"on {len(split.labels)} images -> {args.metrics}\n{run}"
    )


if __name__ == "__main__":
    run(main)
