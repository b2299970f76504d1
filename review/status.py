"""Is the pipeline in the workspace up to date, i.e. do its metrics belong to its code?

A checkout without a DVC remote (CI) has no data or models: ``dvc status`` lists them as
missing in every stage. So the verdict comes from ``dvc repro --allow-missing --dry``, DVC's
own rule for "nothing but missing data changed" (it also catches a ``dvc.lock`` whose stages
disagree), and ``dvc status`` supplies the details a reviewer reads.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.stopping import run_stage
from review.dvcdata import dvc_json, run_dvc

# What `dvc status` says of files that are merely absent from this checkout.
MISSING = {"deleted", "not in cache"}


@dataclass(frozen=True)
class PipelineStatus:
    """The verdict, the stages DVC would rerun, and what changed in each."""

    up_to_date: bool
    stages: list[str]
    changes: dict[str, list[str]]  # stage -> "stages/train.py modified", "params.yaml: train"...
    message: str  # DVC's error, when the dry run failed


def stage_changes(status: dict) -> dict[str, list[str]]:
    """Readable changes per stage from ``dvc status --json``, without missing files."""
    found: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed checksum" (command or outs edited), ...
                found.setdefault(stage, []).append(entry)
                continue
            for files in entry.values():
                for path, state in files.items():
                    if isinstance(state, dict):  # params: {section or key: state}
                        keys = ", ".join(f"{key} {value}" for key, value in state.items())
                        found.setdefault(stage, []).append(f"{path}: {keys}")
                    elif state not in MISSING:
                        found.setdefault(stage, []).append(f"{path} {state}")
    return found


def pipeline_status(cwd: Path) -> PipelineStatus:
    """Ask DVC whether any stage would rerun, ignoring data that is missing here."""
    dry_run = run_dvc(["repro", "--allow-missing", "--dry"], cwd)
    output = dry_run.stdout + dry_run.stderr
    # A dry run prints the stages it would run; with data missing it stops at the first.
    stages = re.findall(r"(?:Running stage|failed to reproduce) '([^']+)'", output)
    up_to_date = dry_run.returncode == 0 and not stages
    changes = {} if up_to_date else stage_changes(dvc_json(["status"], cwd))
    errors = dry_run.stderr.strip().splitlines() if dry_run.returncode else []
    message = errors[-1] if errors else ""
    return PipelineStatus(up_to_date, list(dict.fromkeys(stages)), changes, message)


def summary(changes: list[str], shown: int = 3) -> str:
    """The first few changes of a stage; the rest are counted (`dvc status` lists them)."""
    if not changes:
        return "inputs changed upstream"
    rest = f" and {len(changes) - shown} more" if len(changes) > shown else ""
    return ", ".join(changes[:shown]) + rest


def describe(status: PipelineStatus) -> str:
    """One Markdown line for the report."""
    if status.up_to_date:
        return (
            "🟢 **Pipeline up to date**: `dvc.lock` matches the code, params and commands "
            "(`dvc repro --allow-missing --dry` would run nothing), so the metrics belong to "
            "this code."
        )
    stages = sorted(set(status.stages) | set(status.changes))
    details = "; ".join(f"`{stage}`: {summary(status.changes.get(stage, []))}" for stage in stages)
    return (
        f"🔴 **Pipeline not up to date** ({details or status.message}): run `dvc repro` and "
        "commit `dvc.lock`, `metrics/` and `plots/`; until then the metrics may not belong to "
        "this code."
    )


def main(argv: list[str] | None = None) -> None:
    """Print the status line; exit 1 when the pipeline is not up to date (the CI check)."""
    status = pipeline_status(Path.cwd())
    print(describe(status))
    if not status.up_to_date:
        raise PipelineError("the pipeline is not up to date (see above)")


if __name__ == "__main__":
    sys.exit(run_stage(main))
