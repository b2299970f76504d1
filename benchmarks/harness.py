"""The timing harness: interleaved rounds, medians and ratios, and timed child processes.

A contender is a ``Runner``: it takes a step count and returns when that many steps are done.
Rounds are interleaved (a, b, c, a, b, c, ...) after a warm-up, so that load from other
processes hits every contender alike; the median of each contender's rounds is kept.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# A timed round runs ``steps`` steps; a runner takes a step count and returns when done.
Runner = Callable[[int], None]


def round_rates(
    runners: dict[str, Runner], steps: int, repeats: int, images_per_step: int
) -> dict[str, list[float]]:
    """Warm each runner up, then time ``repeats`` interleaved rounds of ``steps`` steps.

    Returns:
        Images per second of each round, by runner name.
    """
    for run in runners.values():
        run(min(steps, 20))  # traces, builds optimizer slots, fills caches
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            run(steps)
            rates[name].append(round(steps * images_per_step / (time.perf_counter() - started)))
    return rates


def summarise(rounds: dict[str, list[float]], reference: str) -> dict:
    """Median images/s by name, each median's ratio to ``reference``'s, and every round."""
    medians = {name: statistics.median(rates) for name, rates in rounds.items()}
    return {
        "images_per_second": medians,
        f"{reference}_over": {
            name: round(medians[reference] / median, 2)
            for name, median in medians.items()
            if name != reference
        },
        "rounds": rounds,
    }


def stage_command(stages: dict, name: str) -> list[str]:
    """A stage's dvc.yaml command as an argument list to run without a shell (no ``exec``)."""
    command = shlex.split(stages[name]["cmd"])
    return command[1:] if command[0] == "exec" else command


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``command``; return its wall-clock seconds. Raises if it fails, with its output."""
    return run_timed(command, cwd, env)[0]


def run_timed(
    command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command``; return its wall-clock seconds and its result (output captured).
    Raises if it fails, with its output."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode} in {cwd}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return seconds, result


def peak_memory_mib(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``command`` as a child process; return its peak resident memory in MiB.

    ``os.wait4`` gives the usage of that one child (``RUSAGE_CHILDREN`` would mix in every
    earlier child, such as DVC).
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output}")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
