"""The MLflow store of a project copy, for the end-to-end tracking tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import ProjectCopy


def client(project: ProjectCopy):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{project.root / 'mlflow.db'}")


def enable_tracking(project: ProjectCopy, template: Path | None, **settings) -> None:
    """Turn tracking on and commit; start from a copy of ``template`` (None: no store yet)."""
    project.set_params({"tracking": {"enabled": True, **settings}})
    project.run("git", "commit", "-qam", "track with MLflow")
    if template is not None:
        shutil.copy(template, project.root / "mlflow.db")


def runs_of(project: ProjectCopy, experiment: str = "digits") -> list:
    store = client(project)
    found = store.get_experiment_by_name(experiment)
    return store.search_runs([found.experiment_id]) if found else []
