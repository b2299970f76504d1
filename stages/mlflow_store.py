"""Where MLflow runs go, and opening that store safely when stages run in parallel.

``MLFLOW_TRACKING_URI`` when set; otherwise an embedded store at the root of the user's
workspace, ``mlflow.db`` (SQLite) and ``mlartifacts/``, as absolute locations. DVC sets
``DVC_ROOT`` for every stage command, and for ``dvc exp run --queue`` it names the workspace the
experiment was queued from, not the temporary copy under ``.dvc/tmp/exps/`` it runs in.

MLflow is imported only inside ``open_store`` and ``find_run``, which ``stages.tracking`` calls
only when tracking is enabled. What a run holds is ``stages.tracking``'s concern.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from stages.errors import PipelineError

STORE_DATABASE = "mlflow.db"
STORE_ARTIFACTS = "mlartifacts"


@dataclass(frozen=True)
class Store:
    """Where MLflow writes: a tracking URI and, for experiments we create, an artifact root."""

    tracking_uri: str
    artifact_location: str | None  # None: the tracking server's default
    lock_path: Path | None  # a SQLite store: serialises schema and experiment creation


def workspace_root(environ: Mapping[str, str], cwd: Path) -> Path:
    """The user's workspace: ``DVC_ROOT`` when DVC runs the stage, else ``cwd``.

    DVC's temporary copies live in ``<workspace>/.dvc/tmp/exps/<name>``; a root inside one
    (from a DVC that sets ``DVC_ROOT`` to the copy) is mapped back to the workspace.
    """
    root = Path(environ.get("DVC_ROOT") or cwd).resolve()
    parts = root.parts
    for index in range(len(parts) - 3):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    return root


def resolve_store(environ: Mapping[str, str], cwd: Path) -> Store:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store of the workspace.

    A SQLite URI is a store without a server: a relative path is taken from the workspace root
    (not from a temporary copy) and artifacts go to ``mlartifacts/`` beside the database.
    """
    uri = environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri and not uri.startswith("sqlite:///"):
        return Store(uri, None, None)
    root = workspace_root(environ, cwd)
    database = root / (uri.removeprefix("sqlite:///") or STORE_DATABASE)
    return Store(
        f"sqlite:///{database}",
        (database.parent / STORE_ARTIFACTS).as_uri(),
        database.with_name(f"{database.name}.lock"),
    )


def open_store(store: Store, experiment: str) -> str:
    """Point MLflow at ``store``; return the id of ``experiment``, created if missing.

    Concurrent stages (``dvc queue start --jobs 2``) hold a file lock while the first of them
    creates the SQLite schema and the experiment: both are check-then-create, and MLflow does
    not lock schema creation itself.

    Raises:
        PipelineError: The experiment exists but is deleted.
    """
    import mlflow

    mlflow.set_tracking_uri(store.tracking_uri)
    with _file_lock(store.lock_path):
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
    import mlflow

    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        with _file_lock(store.lock_path):
            run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise PipelineError(
            f"{run_file} names MLflow run {run_id}, which is not in {store.tracking_uri}; "
            "set MLFLOW_TRACKING_URI to the store that holds it, or retrain with "
            "`dvc repro --force train`"
        ) from None
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
