"""A project folder whose path has spaces and non-ASCII letters (issue 19, item 11): every
Makefile target keeps the path as one argument, and `make ui` starts on the project's store."""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import make_project
from helpers.venvmake import venv_make

from digits.runtime.local_servers import free_port, running

pytestmark = pytest.mark.slow

FOLDER = "my proj é"


def make_targets(makefile: Path) -> list[str]:
    """Every target named in a ``.PHONY`` line."""
    text = makefile.read_text()
    return [name for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for name in line.split()]


@pytest.fixture
def spaced(tmp_path, tiny_mirror):
    return make_project(tmp_path / FOLDER / "project", tiny_mirror)


def test_every_make_target_keeps_the_project_path_as_one_argument(spaced):
    targets = make_targets(spaced.root / "Makefile")
    assert {"repro", "test", "ui", "report", "bench"} <= set(targets)
    for target in targets:
        planned = spaced.run("make", "--dry-run", "--always-make", target).stdout
        for line in planned.splitlines():
            if FOLDER not in line:
                continue
            words = shlex.split(line)
            # A path split by the shell leaves a word that starts inside it.
            assert not [word for word in words if word.startswith(FOLDER.split()[-1])], (
                f"make {target}: the project path is split into words: {line}"
            )


def test_make_ui_starts_on_the_store_of_a_project_whose_path_has_spaces(spaced):
    import mlflow

    database = spaced.root / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{database}").create_experiment(
        "made-before-ui", artifact_location=(spaced.root / "mlartifacts").as_uri()
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = venv_make(spaced.root, "ui", f"UI_PORT={port}")
    log = spaced.root.parent / "make-ui.log"
    with running(command, f"{base}/health", log, spaced.env, name="make ui"):
        query = urllib.parse.urlencode({"experiment_name": "made-before-ui"})
        url = f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}"
        with urllib.request.urlopen(url, timeout=30) as response:
            experiment = json.loads(response.read())["experiment"]
        assert experiment["artifact_location"] == (spaced.root / "mlartifacts").as_uri()


def test_lint_and_the_pipeline_check_run_from_such_a_path(spaced):
    lint = spaced.run(*venv_make(spaced.root, "lint"), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check = spaced.run(*venv_make(spaced.root, "check-pipeline"), check=False)
    output = check.stdout + check.stderr
    assert "Traceback" not in output
    assert "Pipeline up to date" in output or "Pipeline not up to date" in output, output
