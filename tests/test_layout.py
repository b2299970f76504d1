"""The tree shows the architecture: stages -> digits -> nothing above it, and dvc.yaml lists
exactly the modules each stage imports, so a change to any of them reruns the stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from digits import imports

REPO_ROOT = Path(__file__).resolve().parents[1]


def library_closure(script: Path) -> set[str]:
    """Repository-relative paths of the library modules ``script`` needs, transitively."""
    return {path.relative_to(REPO_ROOT).as_posix() for path in imports.library_closure(script)}


STAGES = YAML(typ="safe", pure=True).load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_yaml_lists_exactly_the_modules_a_stage_imports(stage: str):
    script = f"stages/{stage}.py"
    listed = {dep for dep in STAGES[stage]["deps"] if dep.endswith(".py")}
    assert STAGES[stage]["cmd"].startswith(f"exec python -m stages.{stage} ")
    assert listed == {script} | library_closure(REPO_ROOT / script)


def test_stages_holds_only_what_dvc_runs():
    scripts = {path.stem for path in (REPO_ROOT / "stages").glob("*.py")} - {"__init__"}
    assert scripts == set(STAGES)


@pytest.mark.parametrize("folder", ["digits", "review", "benchmarks", "search"])
def test_nothing_below_the_stages_imports_a_stage(folder: str):
    for path in (REPO_ROOT / folder).rglob("*.py"):
        stage_imports = {
            name for name in imports.imported_modules(path) if name.split(".")[0] == "stages"
        }
        assert not stage_imports, f"{path.relative_to(REPO_ROOT)} imports {stage_imports}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_the_search_or_optuna(stage: str):
    script = REPO_ROOT / "stages" / f"{stage}.py"
    files = [script, *(REPO_ROOT / path for path in library_closure(script))]
    found = {
        name
        for path in files
        for name in imports.imported_modules(path)
        if name.split(".")[0] in ("search", "optuna")
    }
    assert not found, f"{stage} imports {found}: the search is an optional extra"
