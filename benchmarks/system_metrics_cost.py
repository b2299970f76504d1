"""Benchmark: what MLflow's system metrics cost a training run.

Every training run opens its MLflow run with ``log_system_metrics`` (docs/tracking.md): a
thread samples CPU, memory, disk and network through psutil every
``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's default: 10) and logs each sample
to the store. Two measures, in one process, on the train stage's own loop:

- ``monitor_cpu``: the monitor thread's own CPU time (``time.thread_time`` read as it exits),
  as a share of the run's wall time, at the default interval and at 1 s. It does not depend on
  what else the machine is doing, so it is the figure to trust on a busy machine.
- ``images_per_s``: the loop inside an MLflow run with and without system metrics, rounds
  interleaved (off, on, off, on, ...) so that load from other processes hits both alike;
  the medians and their ratio.

    python -m benchmarks.system_metrics_cost [--seconds 40] [--repeats 4]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def generated_split(count: int, seed: int = 0):
    """``count`` random images with random one-hot labels: the cost of a step does not depend
    on what the pixels show."""
    from digits.data.arrays import Split

    rng = np.random.default_rng(seed)
    x = rng.random((count, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, count)]
    return Split(x=x, y=y, class_names=tuple(str(digit) for digit in range(10)))


def monitor_cpu_seconds() -> list[float]:
    """Make every system-metrics monitor thread append its CPU seconds to the returned list
    as it exits."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    seconds: list[float] = []
    original = SystemMetricsMonitor.monitor

    def timed_monitor(self) -> None:
        try:
            original(self)
        finally:
            seconds.append(time.thread_time())

    SystemMetricsMonitor.monitor = timed_monitor
    return seconds


def timed_run(train: Callable[[int], None], steps: int, system_metrics: bool) -> float:
    """Wall seconds of one MLflow run that trains ``steps`` steps, start and end included."""
    import mlflow

    started = time.perf_counter()
    with mlflow.start_run(log_system_metrics=system_metrics):
        train(steps)
    return time.perf_counter() - started


def system_metrics_figures(seconds: float = 40.0, repeats: int = 4) -> dict:
    """This benchmark's figures, from a child process (it patches MLflow's monitor)."""
    command = [sys.executable, "-m", "benchmarks.system_metrics_cost"]
    command += ["--seconds", str(seconds), "--repeats", str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", None)
    env.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", None)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Time the train stage's loop with and without system metrics; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of a timed round")
    parser.add_argument("--repeats", type=int, default=4, help="timed rounds per setting")
    args = parser.parse_args(argv)

    from digits.runtime.cpu import prefer_onednn

    prefer_onednn()  # as the stages do
    import mlflow

    from benchmarks.contenders import project_trainer
    from digits.params import load_params, replace
    from digits.runtime.cpu import machine_facts

    params = replace(load_params(args.params, sections=("train",)).train, precision="float32")
    train = project_trainer(params, generated_split(5_000))
    train(20)  # traces the loop, builds the optimizer's slots
    started = time.perf_counter()
    train(200)
    steps = max(1, round(200 * args.seconds / (time.perf_counter() - started)))

    cpu_seconds = monitor_cpu_seconds()
    with tempfile.TemporaryDirectory() as store:
        mlflow.set_tracking_uri(f"sqlite:///{Path(store) / 'mlflow.db'}")
        mlflow.set_experiment("system-metrics-cost")
        walls: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for setting in walls:
                walls[setting].append(timed_run(train, steps, setting == "on"))
        default_share = [cpu / wall for cpu, wall in zip(cpu_seconds, walls["on"], strict=True)]

        os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
        cpu_seconds.clear()
        fast_walls = [timed_run(train, steps, True) for _ in range(2)]
        fast_share = [cpu / wall for cpu, wall in zip(cpu_seconds, fast_walls, strict=True)]

    rates = {
        name: [steps * params.batch_size / wall for wall in times] for name, times in walls.items()
    }
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    print(
        json.dumps(
            {
                "machine": machine_facts(),
                "steps_per_round": steps,
                "repeats": args.repeats,
                "monitor_cpu_share": {
                    "interval_10s": round(max(default_share), 5),
                    "interval_1s": round(max(fast_share), 5),
                },
                "images_per_s": {
                    **medians,
                    "on_over_off": round(medians["on"] / medians["off"], 4),
                    "rounds": {name: [round(r) for r in values] for name, values in rates.items()},
                },
            }
        )
    )


if __name__ == "__main__":
    main()
