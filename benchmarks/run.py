"""Benchmark: the train stage's loop against plain ``model.fit`` and a TF1 ``feed_dict`` loop.

The entry point of ``make bench``; the pieces live beside it: ``harness`` (interleaved
rounds, medians), ``contenders`` and ``tf1`` (what is timed), ``pipeline_timings`` (DVC in a
copy of the project), ``arithmetic`` (the limit), ``table``, and ``serving`` (the model
behind ``mlflow models serve``), ``system_metrics_cost`` (what MLflow's system metrics take
from a training run).

In one process, on the same model, data and batch size, each contender runs ``--steps``
optimizer steps per round; rounds are interleaved (a, b, c, a, b, c, ...) after a warm-up so
that load from other processes hits every contender alike, and the median images/s is kept.
Batched inference is timed the same way. Then, in a temporary copy of the project, DVC runs
the pipeline to time download + preprocess and a no-op ``dvc repro``, and the train stage
runs once more as a child process to read its peak resident memory.

``portability`` times the train stage against PyTorch eager with the CPU's full instruction
set, capped at AVX2, and capped with TensorFlow's default oneDNN switch
(``benchmarks.portability``), and ``recipes`` runs the default and the fast recipe to their
test accuracy: the figures that differ most between kinds of CPU. ``--only portability``
runs just those two (and merges them into an existing ``--out``).

Run it with ``make bench`` (``DATA_MIRROR`` set: real Fashion-MNIST from that mirror; unset:
generated images of the same shape). It writes ``metrics/bench.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "metrics" / "bench.json")
    parser.add_argument(
        "--mirror",
        default=os.environ.get("DATA_MIRROR"),
        help="folder holding fashion-mnist/*.gz (default: $DATA_MIRROR); "
        "without it, generated images of the same shape",
    )
    parser.add_argument(
        "--only",
        choices=["all", "portability"],
        default="all",
        help="portability: only the train stage against PyTorch and the two recipes",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="training steps per round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per contender")
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=500,
        help="steps of the train run whose peak memory is read",
    )
    parser.add_argument(
        "--isa",
        default="AVX512_CORE",
        help="ONEDNN_MAX_CPU_ISA of the run that hides the bfloat16 units (AVX512_CORE, AVX2)",
    )
    parser.add_argument("--queue-experiments", type=int, default=4)
    parser.add_argument(
        "--long-queue-steps",
        type=int,
        default=12000,
        help="steps of each experiment of the second queue, where training takes most of "
        "the time (0: no second queue)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark (or ``--only`` some), write ``--out`` and print a table."""
    args = parse_args(argv)
    from digits.runtime.cpu import prefer_onednn

    prefer_onednn()  # before TensorFlow loads, as the stages do (digits/entry.py)
    import tensorflow as tf

    from benchmarks import serving, startup
    from benchmarks.arithmetic import arithmetic_limit
    from benchmarks.checkpoint_cost import checkpoint_figures
    from benchmarks.checkpoint_cost import format_lines as checkpoint_lines
    from benchmarks.contenders import throughput_figures
    from benchmarks.experiment_times import (
        evaluate_only_figures,
        queue_figures,
        recipes_figures,
        startup_figures,
    )
    from benchmarks.pipeline_timings import generated_mirror, pipeline_figures, project_env
    from benchmarks.portability import portability_figures
    from benchmarks.precision import capped_figures, cpu_bfloat16_support
    from benchmarks.system_metrics_cost import system_metrics_figures
    from benchmarks.table import format_table, portability_lines
    from digits.data.arrays import load_split
    from digits.data.catalog import TRAIN_IMAGES
    from digits.params import load_params
    from digits.params import replace as params_replace
    from digits.runtime.atomic import write_json
    from digits.runtime.cpu import MAX_BFLOAT16_SLOWDOWN, bfloat16_slowdown, machine_facts

    params = load_params(args.params, sections=("train", "evaluate"))
    train_params = params_replace(params.train, batch_size=args.batch_size)
    load_before = os.getloadavg()
    slowdown = bfloat16_slowdown()
    bfloat16_usable = slowdown <= MAX_BFLOAT16_SLOWDOWN
    results: dict = {
        "machine": machine_facts(),
        "bfloat16_slowdown": round(slowdown, 2),
        "cpu": cpu_bfloat16_support(),
    }
    if args.only == "portability" and args.out.is_file():
        results = {**json.loads(args.out.read_text()), **results}

    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        work = Path(work)
        mirror = Path(args.mirror) if args.mirror else work / "mirror"
        if (mirror / "fashion-mnist" / TRAIN_IMAGES).is_file():
            dataset, entry, data = "fashion-mnist", None, f"Fashion-MNIST from {mirror}"
        else:
            dataset, data = "generated", "generated (random images, Fashion-MNIST's shape)"
            entry = generated_mirror(mirror / dataset, 60_000, 10_000)
        print(f"pipeline in a copy of the project ({data}) ...", flush=True)
        copy_params = {
            "data": {"dataset": dataset},
            "train": {"steps": args.memory_steps, "eval_every": args.memory_steps},
        }
        catalog = {dataset: entry} if entry else None
        pipeline = pipeline_figures(work / "project", mirror, copy_params, catalog)
        processed = work / "project" / "data" / "processed"
        project, env = work / "project", project_env(mirror)
        print("train stage against PyTorch eager: full, AVX2, TensorFlow's default ...")
        results["portability"] = portability_figures(processed, args.steps, 3, args.batch_size)
        print("the default and the fast recipe ...", flush=True)
        default = {f"train.{key}": getattr(params.train, key) for key in ("steps", "eval_every")}
        results["recipes"] = recipes_figures(project, env, default, bfloat16_usable)
        results["data"] = data
        if args.only == "portability":
            load_after = os.getloadavg()
            results["portability_load_average"] = {
                "before": [round(value, 2) for value in load_before],
                "after": [round(value, 2) for value in load_after],
            }
            write_json(args.out, results)
            print("\n".join(portability_lines(results)))
            print(f"-> {args.out}")
            return
        train_split = load_split(processed / "train.npz")
        validation_split = load_split(processed / "validation.npz")
        print("start-up, evaluate-only experiment, queue ...", flush=True)
        results["startup"] = startup_figures(project, env)
        results["evaluate_only"] = evaluate_only_figures(project, env)
        results["queue"] = queue_figures(project, env, args.queue_experiments)
        if args.long_queue_steps:
            results["queue_long"] = queue_figures(
                project, env, args.queue_experiments, args.long_queue_steps
            )
        print(f"oneDNN capped at {args.isa} (no bfloat16 units) ...", flush=True)
        capped = capped_figures(args.isa, processed, 100, 3, args.batch_size)

    print(f"throughput: {args.repeats} rounds of {args.steps} steps of {args.batch_size} ...")
    results.update(
        {
            "batch_size": args.batch_size,
            "steps_per_round": args.steps,
            "repeats": args.repeats,
            "memory_run_steps": args.memory_steps,
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            **throughput_figures(
                train_params,
                train_split,
                validation_split,
                params.evaluate.batch_size,
                args.steps,
                args.repeats,
                bfloat16=bfloat16_usable,
            ),
            "pipeline": pipeline,
            "arithmetic_limit": arithmetic_limit(train_params),
            "without_bfloat16_units": capped,
            # the train stage's checkpoint, default eval_every (benchmarks/checkpoint_cost.py)
            "checkpoint": checkpoint_figures(train_params, train_split),
            "stage_help": startup.startup_figures(),  # `--help` of each stage
        }
    )
    print("serving: mlflow models serve on an untrained default model ...", flush=True)
    results["serving"] = serving.serving_figures(None)
    print("MLflow's system metrics: their cost on the train stage's loop ...", flush=True)
    results["system_metrics"] = system_metrics_figures()
    load_after = os.getloadavg()
    results["load_average"] = {
        "before": [round(value, 2) for value in load_before],
        "after": [round(value, 2) for value in load_after],
    }
    write_json(args.out, results)
    print(format_table(results))
    print("\n".join(checkpoint_lines(results["checkpoint"])))
    print(startup.format_table(results["stage_help"]))
    serving.print_table(results["serving"])
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
