"""Benchmark: what the train stage's checkpoint costs, against the training it protects.

The train stage writes a checkpoint after every evaluation, every ``eval_every`` steps. This
times, on the same model, data and batch size, the ``eval_every`` optimizer steps between
two checkpoints (the stage's own chunk runner) and one checkpoint as the stage writes it:
the snapshot of every model and optimizer variable (``variable.numpy()``), then
``digits.model.checkpoint.save``. Rounds alternate (steps, save, steps, save, ...) so that load
from other processes hits both alike; the medians give the cost per save as a share of the
training time it follows. ``restore_best_weights`` adds a copy of the weights to each save.

Run with the main bench (``make bench``), or alone: ``python -m benchmarks.checkpoint_cost``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from digits.data.arrays import Split
from digits.model import checkpoint, training
from digits.model.networks import build_model
from digits.params import TrainParams, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]


def checkpoint_figures(params: TrainParams, train_split: Split, repeats: int = 3) -> dict:
    """Median seconds of ``params.eval_every`` training steps and of one checkpoint save.

    Returns:
        Steps per checkpoint, bytes per checkpoint (with and without the best weights),
        median seconds of the steps and of a save, every round, and the save's share of the
        steps in percent.
    """
    training.seed_everything(params.seed)
    model = build_model(params)
    optimizer = training.make_optimizer(params)
    run_chunk = training.make_chunk_runner(model, optimizer, train_split)
    schedule = training.batch_schedule(
        len(train_split.x), params.batch_size, params.eval_every, params.seed
    )
    float(run_chunk(schedule[:2])[0])  # compile before timing
    step_rounds, save_rounds, sizes = [], [], {}
    # atomic writes stay inside the working folder, as a stage's do
    with tempfile.TemporaryDirectory(prefix=".bench-checkpoint-", dir=Path.cwd()) as folder:
        path = Path(folder) / "checkpoint.npz"
        for _ in range(repeats):
            started = time.perf_counter()
            float(run_chunk(schedule)[0])  # wait for the result
            step_rounds.append(time.perf_counter() - started)
            started = time.perf_counter()
            sizes["plain"] = save_like_the_stage(path, model, optimizer, best=False)
            save_rounds.append(time.perf_counter() - started)
        sizes["with_best"] = save_like_the_stage(path, model, optimizer, best=True)
    steps_seconds = statistics.median(step_rounds)
    save_seconds = statistics.median(save_rounds)
    return {
        "steps_per_checkpoint": params.eval_every,
        "batch_size": params.batch_size,
        "checkpoint_bytes": sizes["plain"],
        "checkpoint_bytes_with_best_weights": sizes["with_best"],
        "steps_seconds": round(steps_seconds, 4),
        "save_seconds": round(save_seconds, 4),
        "save_percent_of_training": round(100 * save_seconds / steps_seconds, 3),
        "steps_rounds": [round(value, 4) for value in step_rounds],
        "save_rounds": [round(value, 4) for value in save_rounds],
    }


def save_like_the_stage(path: Path, model, optimizer, best: bool) -> int:
    """Snapshot the variables and save them, as ``training.train`` and the stage do."""
    variables = [variable.numpy() for variable in model.variables]
    state = checkpoint.TrainingState(
        step=0,
        rows=[],
        train_seconds=0.0,
        elapsed_seconds=0.0,
        variables=variables,
        optimizer_variables=[variable.numpy() for variable in optimizer.variables],
        best_variables=[np.copy(value) for value in variables] if best else None,
    )
    return checkpoint.save(path, "benchmark", state, run_id=None)


def format_lines(figures: dict) -> list[str]:
    """The benchmark table's lines for the checkpoint."""
    return [
        f"checkpoint every {figures['steps_per_checkpoint']} steps of {figures['batch_size']}: "
        f"{figures['save_seconds'] * 1000:.1f} ms per save "
        f"({figures['checkpoint_bytes'] / 2**20:.2f} MiB; "
        f"{figures['checkpoint_bytes_with_best_weights'] / 2**20:.2f} MiB with the best weights) "
        f"= {figures['save_percent_of_training']:.2f}% of "
        f"{figures['steps_seconds']:.2f} s of training"
    ]


def main(argv: list[str] | None = None) -> None:
    """Time the checkpoint of the default recipe on random images of Fashion-MNIST's shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=55_000)
    args = parser.parse_args(argv)
    params = load_params(args.params, sections=("train",)).train
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, args.train_images)
    images = rng.random((args.train_images, 28, 28, 1), dtype=np.float32)
    split = Split(images, np.eye(10, dtype=np.float32)[labels], tuple(map(str, range(10))))
    for line in format_lines(checkpoint_figures(params, split, args.repeats)):
        print(line)


if __name__ == "__main__":
    main()
