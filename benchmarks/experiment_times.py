"""What a user waits for, in the benchmark's copy of the project: stage start-up, an
evaluate-only experiment, a queue of short experiments with 1 and 2 jobs, the fast recipe.

Start-up is the time a stage spends importing modules (``PYTHONPROFILEIMPORTTIME``: the sum
of the top-level imports' cumulative times, lazy imports in ``main`` included), against its
whole wall time. Every figure comes from commands a user would type, run in ``root`` after
``pipeline_timings.pipeline_figures`` has run the pipeline there once.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from benchmarks.harness import run_timed, stage_command, timed
from digits.params import read_yaml

# The time-to-accuracy recipe of docs/performance.md, as `dvc exp run -S` values.
FAST_RECIPE = {
    "train.precision": "bfloat16",
    "train.batch_size": 128,
    "train.lr_schedule": "one_cycle",
    "train.learning_rate": 0.005,
    "train.steps": 6000,
    "train.eval_every": 500,
    "train.dropout": 0.3,
    "train.kernel_size": 3,
    "train.conv1_filters": 32,
    "train.conv2_filters": 64,
    "train.augment_shift": 1,
}
STAGES_WITH_TENSORFLOW = ("train", "evaluate", "visualize")


def set_flags(values: dict) -> list[str]:
    """``{"train.steps": 10}`` -> ``["-S", "train.steps=10"]``."""
    return [part for key, value in values.items() for part in ("-S", f"{key}={value}")]


def import_seconds(profile: str) -> float:
    """Seconds spent in top-level imports, from ``python -X importtime`` output."""
    total = 0
    for line in profile.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # one space after the bar: a top-level import
            total += int(cumulative)
    return total / 1e6


def startup_figures(root: Path, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each TensorFlow stage's import seconds and wall seconds, run by its dvc.yaml command."""
    stages = read_yaml(root / "dvc.yaml")["stages"]
    figures = {}
    for name in STAGES_WITH_TENSORFLOW:
        profiled = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
        wall, result = run_timed(stage_command(stages, name), root, profiled)
        imports = import_seconds(result.stderr)
        figures[name] = {
            "import_seconds": round(imports, 2),
            "wall_seconds": round(wall, 2),
            "startup_share": round(imports / wall, 2),
        }
    return figures


def evaluate_only_figures(root: Path, env: dict[str, str]) -> dict[str, float]:
    """Wall time of ``dvc exp run`` changing one evaluate param, and evaluate's start-up
    share of it (its import seconds, measured in a second run with import profiling).

    Raises:
        RuntimeError: The experiment ran another stage than evaluate (the figure would not
            be the one named).
    """
    # The stage commands run outside DVC before this (peak memory, start-up) rewrote the train
    # stage's timing files, so DVC would retrain: record the workspace as it is first.
    timed(["dvc", "commit", "--force"], root, env)
    timed(["git", "add", "-A"], root, env)
    timed(["git", "commit", "-qm", "bench: the outputs as they are", "--allow-empty"], root, env)
    wall, _ = evaluate_only_run(root, env, 9)
    _, result = evaluate_only_run(root, {**env, "PYTHONPROFILEIMPORTTIME": "1"}, 16)
    # DVC's own imports are profiled too; keep only the stage's (the last interpreter's).
    stage_profile = result.stderr.split("import time: self [us] | cumulative | imported package")
    imports = import_seconds(stage_profile[-1])
    return {
        "wall_seconds": round(wall, 2),
        "evaluate_import_seconds": round(imports, 2),
        "startup_share": round(imports / wall, 2),
    }


def evaluate_only_run(
    root: Path, env: dict[str, str], examples: int
) -> tuple[float, subprocess.CompletedProcess]:
    """``dvc exp run -S evaluate.error_examples=<examples>``: its wall seconds and result."""
    command = ["dvc", "exp", "run", "-S", f"evaluate.error_examples={examples}"]
    wall, result = run_timed(command, root, env)
    ran = stages_run(result.stdout)
    if ran != ["evaluate"]:
        raise RuntimeError(f"an evaluate-only experiment ran {ran}:\n{result.stdout[-2000:]}")
    return wall, result


def stages_run(output: str) -> list[str]:
    """The stages ``dvc repro`` or ``dvc exp run`` printed as run, in order."""
    return re.findall(r"^Running stage '([^']+)':", output, flags=re.MULTILINE)


def queue_figures(
    root: Path, env: dict[str, str], experiments: int = 4, steps: int = 200
) -> dict[str, dict[str, float]]:
    """Wall time of a queue of ``experiments`` short ones (``steps`` steps, seeds 1, 2, ...)
    run with ``dvc queue start --jobs 1``, then with ``--jobs 2`` and ``DIGITS_THREADS=1``."""
    figures = {}
    for jobs, threads, first_seed in ((1, "", 1), (2, "1", 1 + experiments)):
        run_env = {**env, "DIGITS_THREADS": threads}
        for seed in range(first_seed, first_seed + experiments):
            values = {"train.steps": steps, "train.eval_every": steps, "train.seed": seed}
            timed(["dvc", "exp", "run", "--queue", *set_flags(values)], root, run_env)
        started = time.perf_counter()
        timed(["dvc", "queue", "start", "--jobs", str(jobs)], root, run_env)
        wait_for_queue(root, run_env)
        wall = time.perf_counter() - started
        figures[f"jobs_{jobs}"] = {
            "digits_threads": threads or "unset",
            "wall_seconds": round(wall, 1),
            "experiments_per_hour": round(experiments * 3600 / wall),
        }
    figures["jobs_2_speedup"] = round(
        figures["jobs_1"]["wall_seconds"] / figures["jobs_2"]["wall_seconds"], 2
    )
    figures["steps"] = steps
    return figures


def wait_for_queue(root: Path, env: dict[str, str], timeout: float = 1800) -> None:
    """Return once ``dvc queue status`` lists nothing queued or running; raise if one failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run(
            ["dvc", "queue", "status"], cwd=root, env=env, capture_output=True, text=True
        ).stdout
        if "Failed" in status:
            raise RuntimeError(f"a queued experiment failed:\n{status}")
        if "Queued" not in status and "Running" not in status:
            return
        time.sleep(1)
    raise TimeoutError(f"the queue did not finish in {timeout} s")


def recipe_figures(
    root: Path, env: dict[str, str], settings: dict | None = None
) -> dict[str, float | dict]:
    """A recipe as one ``dvc exp run``: its test accuracy and training seconds.

    Args:
        settings: ``-S`` values over params.yaml (default: the fast recipe); ``{}``: the
            default recipe.
    """
    settings = FAST_RECIPE if settings is None else settings
    wall = timed(["dvc", "exp", "run", *set_flags(settings)], root, env)
    train = json.loads((root / "metrics" / "train.json").read_text())
    run_facts = json.loads((root / "metrics" / "train_run.json").read_text())
    evaluation = json.loads((root / "metrics" / "eval.json").read_text())
    return {
        "settings": settings,
        "test_accuracy": evaluation["accuracy"],
        "val_accuracy": train["val_accuracy"],
        "training_seconds": run_facts["training_seconds"],
        "images_per_second": run_facts["images_per_second"],
        "experiment_wall_seconds": round(wall, 1),
        "machine": run_facts.get("machine"),
    }


def recipes_figures(
    root: Path, env: dict[str, str], default: dict, bfloat16_usable: bool
) -> dict[str, dict]:
    """The default recipe and the fast one, on this CPU.

    Args:
        default: ``-S`` values that restore params.yaml's own ``train`` settings in ``root``
            (whose params the benchmark has cut short), as ``{"train.steps": 10000, ...}``.
        bfloat16_usable: Whether this CPU runs bfloat16
            (``digits.runtime.cpu.check_bfloat16_speed``): where it does not, the fast recipe
            runs in float32, and says so in its settings.
    """
    fast = FAST_RECIPE if bfloat16_usable else {**FAST_RECIPE, "train.precision": "float32"}
    return {
        "default": recipe_figures(root, env, default),
        "fast": recipe_figures(root, env, fast),
    }
