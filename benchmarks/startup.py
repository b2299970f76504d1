"""How fast each stage answers ``--help``: a fresh interpreter per run, as a user types it.

    python -m benchmarks.startup          # also part of `make bench`

Stages import TensorFlow, MLflow and the plotting libraries only after parsing their
arguments (STYLE.md rule 11), so ``--help`` and argument errors need none of them.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("download", "preprocess", "train", "evaluate", "visualize")


def help_seconds(stage: str, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds of ``python -m stages.<stage> --help``,
    ``repeats`` times each. CPU time barely depends on what else the machine runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", f"stages.{stage}", "--help"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        )
        wall.append(round(time.perf_counter() - started, 3))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        cpu.append(round(used, 3))
    return wall, cpu


def startup_figures(repeats: int = 5) -> dict[str, dict]:
    """Medians and every round of wall-clock and CPU seconds of each stage's ``--help``."""
    figures = {}
    for stage in STAGES:
        wall, cpu = help_seconds(stage, repeats)
        figures[stage] = {
            "median_seconds": statistics.median(wall),
            "median_cpu_seconds": statistics.median(cpu),
            "rounds": wall,
            "cpu_rounds": cpu,
        }
    return figures


def format_table(figures: dict[str, dict]) -> str:
    """One line per stage: median and slowest wall-clock seconds, median CPU seconds."""
    lines = ["stage --help (s)   median  slowest      cpu"]
    for stage, entry in figures.items():
        lines.append(
            f"{stage:<17}{entry['median_seconds']:>8.2f}{max(entry['rounds']):>9.2f}"
            f"{entry['median_cpu_seconds']:>9.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(startup_figures()))
