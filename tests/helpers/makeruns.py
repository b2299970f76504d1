"""Run a make target for real with a stand-in interpreter that records its arguments, so a
test sees what a command receives, after make and the shell, without running it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO_ROOT

STAMPS = (".installed", ".installed-test", ".installed-team", ".installed-search")


def make_calls(target: str, variables: list[str], folder: Path) -> list[list[str]]:
    """The argument lists (``argv[0]`` first) of every ``python``, ``mlflow`` and ``dvc`` of
    the venv that ``make <target> <variables>`` ran; the venv is a stand-in in ``folder``.

    Raises:
        CalledProcessError: make failed.
    """
    log = folder / "calls.jsonl"
    bin_dir = folder / "venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    recorder = (
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(log)!r}, 'a') as out:\n    out.write(json.dumps(sys.argv) + '\\n')\n"
    )
    for name in ("python", "mlflow", "dvc"):
        (bin_dir / name).write_text(recorder)
        (bin_dir / name).chmod(0o755)
    for stamp in STAMPS:  # installed already: make runs only the target's own lines
        (bin_dir.parent / stamp).touch()
    # make takes variables from the environment too (a CI runner may set PORT).
    env = {name: value for name, value in os.environ.items() if name not in ("MODEL", "PORT")}
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), target,
         f"VENV={bin_dir.parent}", *variables],
        capture_output=True, text=True, check=True, env=env, cwd=folder,
    )  # fmt: skip
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
