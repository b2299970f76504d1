"""Set-up time of the README's two commands on a fresh clone, two ways side by side.

For each way (a commit of this repository whose Makefile installs that way: ``--pip-commit``
installed with pip from pyproject.toml, ``--uv-commit`` with uv from uv.lock), a fresh clone
in a temporary folder, with empty package caches (``PIP_CACHE_DIR``, ``UV_CACHE_DIR``), times:

- until ``dvc repro`` starts: ``make install plots-page``, what ``make repro`` runs first;
- until the tests start: ``make install-test lint browser stack-servers plots-page``, what
  ``make test`` runs before pytest (the first command's venv is kept: as a user who ran the
  quick start's first command, then the second).

Both ways download from the same registry in the same run, one after the other, each round
alternating which goes first. Run it with ``python -m benchmarks.setup_time`` (minutes: it
installs TensorFlow, MLflow and DVC into each clone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UNTIL_REPRO = ["install", "plots-page"]
UNTIL_TESTS = ["install-test", "lint", "browser", "stack-servers", "plots-page"]


def timed_make(clone: Path, targets: list[str], env: dict[str, str]) -> float:
    """Seconds ``make <targets>`` took in ``clone``; raises with its output if it fails."""
    started = time.perf_counter()
    result = subprocess.run(["make", *targets], cwd=clone, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"make {' '.join(targets)} failed in {clone}:\n{result.stderr[-3000:]}")
    return round(time.perf_counter() - started, 1)


def one_way(commit: str, work: Path) -> dict[str, float]:
    """A fresh clone at ``commit`` with empty caches: seconds until repro, then until tests."""
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    env = {
        **os.environ,
        "PIP_CACHE_DIR": str(work / "pip-cache"),
        "UV_CACHE_DIR": str(work / "uv-cache"),
        "npm_config_cache": str(work / "npm-cache"),
    }
    env.pop("VIRTUAL_ENV", None)
    return {
        "until_repro_seconds": timed_make(clone, UNTIL_REPRO, env),
        "until_tests_seconds": timed_make(clone, UNTIL_TESTS, env),
    }


def main(argv: list[str] | None = None) -> None:
    """Time both ways, print a table and write ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip-commit", required=True, help="a commit that installs with pip")
    parser.add_argument("--uv-commit", default="HEAD", help="a commit that installs with uv")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "metrics" / "setup_time.json")
    args = parser.parse_args(argv)

    ways = {"pip": args.pip_commit, "uv": args.uv_commit}
    rounds: dict[str, list[dict]] = {name: [] for name in ways}
    for index in range(args.rounds):
        order = list(ways) if index % 2 == 0 else list(reversed(ways))
        for name in order:
            with tempfile.TemporaryDirectory(prefix=f"setup-{name}-") as work:
                figures = one_way(ways[name], Path(work))
            rounds[name].append(figures)
            print(f"{name}: {figures}", flush=True)
    results = {"commits": ways, "rounds": rounds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for key in ("until_repro_seconds", "until_tests_seconds"):
        pip = min(figures[key] for figures in rounds["pip"])
        uv = min(figures[key] for figures in rounds["uv"])
        print(f"{key}: pip {pip:.1f} s, uv {uv:.1f} s ({pip / uv:.1f}x)")


if __name__ == "__main__":
    main()
