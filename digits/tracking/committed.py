"""Whether a git revision holds the pipeline's results, and the line that says what to commit.

    python -m digits.tracking.committed [--revision HEAD]     # prints that line, or nothing

``dvc metrics diff``, ``dvc exp show --only-changed``, the review report, the metric gate and
the ranking of experiments all compare with a commit. Until ``dvc.lock`` and the metrics of a
first run are committed there is nothing to compare with: DVC warns about HEAD, the table
collapses, and the gate fails. Those commands print this module's line instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from digits.runtime.stopping import run_stage

# What a commit needs for the comparisons: the lock (which outputs, from which inputs) and the
# headline metrics of train and evaluate.
RESULTS = ("dvc.lock", "metrics/train.json", "metrics/eval.json")
# The results a run leaves for git: the lock, metrics/ and the plot data in plots/ (with the
# .gitignore DVC writes there for the images it caches), and the params that made them (an
# edit such as the offline switch of data.dataset belongs with its results).
COMMIT_COMMAND = 'git add dvc.lock metrics plots params.yaml && git commit -m "Pipeline results"'


def missing_results(revision: str, cwd: Path) -> list[str]:
    """The files of ``RESULTS`` that ``revision`` lacks (all of them when it is no commit)."""
    return [
        path
        for path in RESULTS
        if subprocess.run(
            ["git", "cat-file", "-e", f"{revision}:{path}"], cwd=cwd, capture_output=True
        ).returncode
        != 0
    ]


def uncommitted_hint(revision: str, cwd: Path) -> str | None:
    """One line saying that ``revision`` holds none of ``RESULTS`` and the git command that
    commits them; None when it holds any (a partial commit is named by the command at hand)."""
    if len(missing_results(revision, cwd)) < len(RESULTS):
        return None
    return (
        f"{revision} holds no pipeline results yet ({', '.join(RESULTS)} are not committed), "
        f"so there is nothing to compare with: after `dvc repro`, run {COMMIT_COMMAND}"
    )


def main(argv: list[str] | None = None) -> None:
    """Print the hint for ``--revision``, or nothing when it holds the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", default="HEAD", help="git revision (default HEAD)")
    args = parser.parse_args(argv)
    hint = uncommitted_hint(args.revision, Path.cwd())
    if hint:
        print(hint)


if __name__ == "__main__":
    sys.exit(run_stage(main))
