"""Opening a store for a stage: point MLflow at it, check it, and find or create what the
stage needs, under a file lock when stages run in parallel on one SQLite store.

MLflow is imported only here (inside the functions), which ``digits.tracking.stage_run`` calls
only when tracking is enabled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from digits.errors import PipelineError
from digits.tracking.mlflow_store import Store
from digits.tracking.store_checks import UNCHANGED, check_inside, prepare, store_errors


def open_store(store: Store, experiment: str) -> str:
    """Point MLflow at ``store``; return the id of ``experiment``, created if missing.

    Concurrent stages (``dvc queue start --jobs 2``) hold a file lock while the first of them
    creates the SQLite schema and the experiment: both are check-then-create, and MLflow does
    not lock schema creation itself.

    Raises:
        PipelineError: The experiment exists but is deleted.
        StoreError: The store is damaged, does not answer, or keeps the experiment's
            artifacts outside the workspace.
    """
    with _file_lock(store.lock_path):
        prepare(store)
        import mlflow

        mlflow.set_tracking_uri(store.tracking_uri)
        with store_errors(store, UNCHANGED):
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                try:
                    return mlflow.create_experiment(
                        experiment, artifact_location=store.artifact_location
                    )
                except mlflow.exceptions.MlflowException as error:
                    # Another process created it since we looked (a server store has no lock).
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = mlflow.get_experiment_by_name(experiment)
    check_inside(
        store, found.artifact_location, f"MLflow experiment {experiment!r} in {store.tracking_uri}"
    )
    if found.lifecycle_stage == "deleted":
        raise PipelineError(
            f"tracking.experiment: MLflow experiment {experiment!r} is deleted in "
            f"{store.tracking_uri}; restore it (`mlflow experiments restore --experiment-id "
            f"{found.experiment_id}`) or choose another name"
        )
    return found.experiment_id


def find_run(store: Store, run_id: str, run_file: str | os.PathLike[str]) -> None:
    """Point MLflow at ``store`` and check that it holds ``run_id``, not deleted.

    Raises:
        PipelineError: The run is not in the store, or is deleted; ``run_file`` (where the
            id came from) is named in the message.
    """
    with _file_lock(store.lock_path):
        prepare(store)
        import mlflow

        mlflow.set_tracking_uri(store.tracking_uri)
        try:
            with store_errors(store, UNCHANGED):
                run = mlflow.MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise PipelineError(
                f"{run_file} names MLflow run {run_id}, which is not in {store.tracking_uri}; "
                "set MLFLOW_TRACKING_URI to the store that holds it, or retrain with "
                "`dvc repro --force train`"
            ) from None
    check_inside(store, run.info.artifact_uri, f"{run_file} names MLflow run {run_id}, which")
    if run.info.lifecycle_stage == "deleted":
        raise PipelineError(
            f"{run_file} names MLflow run {run_id}, which is deleted in {store.tracking_uri}; "
            f"restore it (`mlflow runs restore --run-id {run_id}`) or retrain with "
            "`dvc repro --force train`"
        )


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing); None: no lock."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
