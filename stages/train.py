"""Train stage: fit the model named in params on the train split, watch the validation split.

The loop itself is in ``digits/model/training.py``; this script reads the splits, prints progress,
stages the outputs, logs them and the run to MLflow, then swaps all of them in at once. Every
evaluation it writes a checkpoint (``digits/model/checkpoint.py``); after an interruption the next
run resumes from it, into the same MLflow run, and the checkpoint is deleted when the stage
completes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digits.data.arrays import load_split
from digits.entry import run
from digits.model import checkpoint
from digits.model.history import logged_metrics, progress_line, stop_lines
from digits.params import load_params
from digits.runtime import cli
from digits.runtime.atomic import Outputs
from digits.runtime.cpu import check_bfloat16_speed, describe_machine, machine_facts
from digits.tracking import stage_run
from digits.tracking.run_values import model_name

if TYPE_CHECKING:  # heavy: imported where used, after argument parsing (STYLE.md rule 11)
    from digits.model.training import TrainResult

CHECKPOINT = Path("models/checkpoint.npz")


def stage_outputs(
    outputs: Outputs,
    result: TrainResult,
    model_path: Path,
    metrics: Path,
    run_facts: Path,
    history: Path,
) -> None:
    """Stage model, metrics, run facts and history in ``outputs`` (swapped in at the end)."""
    from digits.model.networks import save_model

    with outputs.file(model_path) as temporary:
        save_model(result.model, temporary)
    outputs.write_json(metrics, result.metrics)
    outputs.write_json(run_facts, result.run_facts)
    with outputs.file(history) as temporary:
        result.history.to_csv(temporary, index=False, float_format="%.6g")


def main(argv: list[str] | None = None) -> None:
    """Train on ``--data`` splits; write the model, metrics, run facts, history and run id."""
    parser = cli.stage_parser(__doc__)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data/processed"),
        help="folder holding train.npz and validation.npz (written by preprocess)",
    )
    parser.add_argument(
        "--model", type=Path, default=cli.MODEL, help="where to save the trained Keras model"
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("metrics/train.json"),
        help="DVC metrics file: final losses and accuracies, steps run and best step",
    )
    parser.add_argument(
        "--run-facts",
        type=Path,
        default=Path("metrics/train_run.json"),
        help="training-set loss and accuracy, model size and timings (JSON): facts of the run, "
        "not DVC metrics",
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=Path("plots/train_history.csv"),
        help="one row per evaluation: step, train and validation loss and accuracy (CSV)",
    )
    cli.add_run_option(parser, written=True)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=CHECKPOINT,
        help="checkpoint written every evaluation; an interrupted run resumes from it",
    )
    args = parser.parse_args(argv)
    from digits.model.training import train

    # data and tracking are read only to be logged: they describe the model and its run.
    loaded = load_params(args.params, sections=("data", "train", "tracking"))
    params = loaded.train
    check_bfloat16_speed(params.precision)

    train_split = load_split(args.data / "train.npz")
    validation_split = load_split(args.data / "validation.npz")
    print(
        f"training {params.model} for {params.steps} steps of {params.batch_size} images "
        f"({len(train_split.x)} train, {len(validation_split.x)} validation)",
        flush=True,
    )
    data_files = [args.data / "train.npz", args.data / "validation.npz"]
    key = checkpoint.run_key(params, data_files, checkpoint.code_files(__file__))
    resumed = checkpoint.resume_point(args.checkpoint, key)
    resume_run_id = resumed.run_id if resumed else None
    # The run ends once its outputs (the run file among them) are swapped in: FAILED if not.
    outputs = Outputs()
    with stage_run.new_run(loaded.tracking, args.run, outputs, resume_run_id, args.model) as run:
        run.log_params(loaded, ("data", "train", "tracking"))
        run.log_data(
            {"train": args.data / "train.npz", "validation": args.data / "validation.npz"},
            dataset=loaded.data.dataset,
            splits={"train": train_split, "validation": validation_split},
        )
        if resumed:
            run.log_missing_steps(
                [(row["step"], logged_metrics(row)) for row in resumed.state.rows]
            )
            if run.resumed:
                print(f"continuing MLflow run {run.run_id}", flush=True)
        machine = machine_facts()
        run.set_tags({f"machine.{key}": value for key, value in machine.items()})
        print(describe_machine(machine), flush=True)
        progress = progress_line(params.steps)

        def on_eval(row: dict) -> None:
            print(progress(row), flush=True)
            run.log_step(row["step"], logged_metrics(row))

        def on_checkpoint(state: checkpoint.TrainingState) -> None:
            checkpoint.save(args.checkpoint, key, state, run.run_id)

        result = train(
            params, train_split, validation_split, on_eval=on_eval,
            resume=resumed.state if resumed else None, on_checkpoint=on_checkpoint,
        )  # fmt: skip
        for line in stop_lines(result.metrics, params):
            print(line)
        result.run_facts["machine"] = machine
        stage_outputs(outputs, result, args.model, args.metrics, args.run_facts, args.history)
        run.log_metrics({**result.metrics, **result.run_facts}, prefix="train/")
        run.log_files(args.metrics, args.run_facts, args.history, outputs=outputs)
        run.log_model(
            result.model,
            validation_split.x[:1],
            name=model_name(loaded.data.dataset, params.model),
            registered_name=loaded.tracking.register_model,
        )
    args.checkpoint.unlink(missing_ok=True)
    if run.kept_run_id:
        print(
            f"the model is unchanged: {args.run} keeps naming its run {run.kept_run_id}, "
            f"which holds its evaluation (this run is tagged {stage_run.SAME_MODEL_TAG})"
        )
    print(
        f"done: val_acc {result.metrics['val_accuracy']:.4f}, "
        f"{result.run_facts['parameters']:,} parameters, "
        f"{result.run_facts['images_per_second']:,.0f} images/s -> {args.model}\n{run}"
    )


if __name__ == "__main__":
    run(main)
