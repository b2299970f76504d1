"""The DVC experiment queue of a project copy: data made once, experiments read back."""

from __future__ import annotations

import json

from conftest import ProjectCopy

from search.experiments import parse_show

# Seconds a queue of experiments may take on a loaded 2-core machine.
WAIT_S = 600


def experiments(project: ProjectCopy) -> dict:
    """Name -> Experiment of the project's commit, from `dvc exp show --json`."""
    shown = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    return {row.name: row for row in parse_show(shown)[1]}


def with_data(project: ProjectCopy, **params) -> ProjectCopy:
    """Preprocess once and commit, so every experiment starts from the same data."""
    if params:
        project.set_params(params)
    project.run("dvc", "repro", "preprocess")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "data")
    return project
