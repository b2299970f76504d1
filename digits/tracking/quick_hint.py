"""The line ``make quick`` ends with: how to go from its short run to the full one.

    python -m digits.tracking.quick_hint      # compares params.yaml with HEAD's, prints one line

``make quick`` is ``dvc exp run -S train.steps=... -S train.eval_every=...``, which leaves those
values in ``params.yaml``. ``git checkout params.yaml`` puts them back, and with them every other
edit of the file, such as the switch to Fashion-MNIST that a mirror without MNIST needs. When
the file holds other edits, the line gives a command that puts back only the two values.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from digits.runtime.stopping import run_stage

# The keys `make quick` sets (Makefile, QUICK_STEPS and QUICK_EVAL_EVERY).
QUICK_KEYS = ("train.steps", "train.eval_every")
RESET_ALL = "git checkout params.yaml && make repro"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of a parsed YAML mapping, keyed by their dotted path (``train.steps``)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def other_changes(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between the two params trees, ``QUICK_KEYS`` left out."""
    old, new = flatten(committed), flatten(current)
    differing = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    return sorted(differing - set(QUICK_KEYS))


def full_run_hint(committed: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """The command for the full run after ``make quick``.

    Args:
        committed: ``params.yaml`` as the commit holds it, parsed; None when it holds none.
        current: ``params.yaml`` of the workspace, parsed.

    Returns:
        ``git checkout params.yaml && make repro`` when that undoes only what ``make quick``
        set; otherwise a ``dvc exp run`` that sets the committed ``QUICK_KEYS`` back and keeps
        the other edits, naming them.
    """
    if committed is None:
        return "for the full run: set train.steps and train.eval_every back, then make repro"
    changed = other_changes(committed, current)
    if not changed:
        return f"for the full run: {RESET_ALL}"
    old = flatten(committed)
    settings = " ".join(f"-S {key}={old[key]}" for key in QUICK_KEYS if key in old)
    return (
        f"for the full run: .venv/bin/dvc exp run {settings} "
        f"(keeps your other edits of params.yaml: {', '.join(changed)}; "
        "`git checkout params.yaml` would undo them too)"
    )


def committed_params(revision: str, cwd: Path) -> dict[str, Any] | None:
    """``params.yaml`` as ``revision`` holds it, parsed; None when it holds none."""
    shown = subprocess.run(
        ["git", "show", f"{revision}:params.yaml"], cwd=cwd, capture_output=True, text=True
    )
    if shown.returncode != 0:
        return None
    return YAML(typ="safe", pure=True).load(shown.stdout)


def main(argv: list[str] | None = None) -> None:
    """Print the full-run line for the workspace's ``params.yaml`` against ``--revision``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", default="HEAD", help="git revision (default HEAD)")
    args = parser.parse_args(argv)
    current = YAML(typ="safe", pure=True).load(Path("params.yaml").read_text())
    print(full_run_hint(committed_params(args.revision, Path.cwd()), current))


if __name__ == "__main__":
    sys.exit(run_stage(main))
