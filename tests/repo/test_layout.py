"""The tree shows the architecture: stages -> digits -> nothing above it, and dvc.yaml lists
exactly the modules each stage imports, so a change to any of them reruns the stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers.layout import files_importing_test_files, untested_packages, untested_stages
from helpers.paths import REPO_ROOT, TESTS
from ruamel.yaml import YAML

from digits.runtime import imports


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


# Tests by layer (docs/development.md): tests/unit/<role>/ per library sub-package, every
# stage tested, helpers in tests/helpers/ and never a test file imported by another.


def write_test(path: Path, body: str = "def test_it():\n    assert True\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


def test_a_sub_package_without_unit_tests_is_found(tmp_path):
    for name in ("data", "model", "figures"):
        write_test(tmp_path / "lib" / name / "__init__.py", '"""A role."""\n')
    write_test(tmp_path / "unit" / "data" / "test_idx.py")
    write_test(tmp_path / "unit" / "figures" / "test_empty.py", "def helper():\n    pass\n")
    assert untested_packages(tmp_path / "lib", tmp_path / "unit") == ["figures", "model"]


def test_every_library_sub_package_has_unit_tests_in_its_folder():
    assert untested_packages(REPO_ROOT / "digits", TESTS / "unit") == []


def test_a_stage_no_test_imports_or_runs_is_found(tmp_path):
    write_test(tmp_path / "stages" / "test_a.py", "from stages import train as t\n")
    write_test(tmp_path / "e2e" / "test_b.py", 'COMMAND = ["python", "-m", "stages.evaluate"]\n')
    stages = ["train", "evaluate", "visualize"]
    assert untested_stages(stages, tmp_path) == ["visualize"]


def test_every_stage_is_imported_or_run_by_a_test():
    assert untested_stages(sorted(STAGES), TESTS) == []


def test_no_test_file_imports_another_and_no_two_share_a_name():
    assert files_importing_test_files(TESTS) == {}
    names = [path.name for path in TESTS.rglob("test_*.py")]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []


PACKAGES = ("digits", "stages", "review", "search", "teamstack", "benchmarks")
MAX_TOP_LEVEL_MODULES = 8
MAX_LINES = 300


def repository_modules() -> list[Path]:
    """Every .py file of the repository's packages (tests aside)."""
    return sorted(path for folder in PACKAGES for path in (REPO_ROOT / folder).rglob("*.py"))


def test_the_library_top_holds_few_modules():
    top = sorted(path.name for path in (REPO_ROOT / "digits").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"digits/ holds {len(top)} modules: {top}"


def test_every_library_sub_package_says_what_belongs_in_it():
    subpackages = [path for path in (REPO_ROOT / "digits").iterdir() if path.is_dir()]
    subpackages = [path for path in subpackages if path.name != "__pycache__"]
    assert subpackages, "digits/ has no sub-packages"
    for folder in subpackages:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(REPO_ROOT)} has no __init__.py"
        tree = ast.parse(init.read_text())
        docstring = ast.get_docstring(tree)
        assert docstring and len(docstring.split()) >= 12, f"{init} has no docstring"
        # Only the docstring: importing a sibling module never loads TensorFlow or MLflow
        # through a package, and dvc.yaml's deps (the modules) are the whole of a stage's code.
        assert len(tree.body) == 1, f"{init.relative_to(REPO_ROOT)} holds more than a docstring"


def test_no_source_file_is_over_the_line_limit():
    long = {
        path.relative_to(REPO_ROOT).as_posix(): lines
        for path in repository_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_no_two_modules_share_a_file_name():
    places: dict[str, list[str]] = {}
    for path in repository_modules():
        if path.name != "__init__.py":
            places.setdefault(path.name, []).append(path.relative_to(REPO_ROOT).as_posix())
    twins = {name: paths for name, paths in places.items() if len(paths) > 1}
    assert not twins, f"modules that share a name: {twins}"
