"""Where MLflow runs go: ``MLFLOW_TRACKING_URI`` when set; otherwise an embedded store at the
root of the user's workspace, ``mlflow.db`` (SQLite) and ``mlartifacts/``, as absolute
locations. DVC sets ``DVC_ROOT`` for every stage command, and for ``dvc exp run --queue`` it
names the workspace the experiment was queued from, not the temporary copy under
``.dvc/tmp/exps/`` it runs in.

The store is checked by ``digits.tracking.store_checks`` and opened by
``digits.tracking.store_access``; what a run holds is ``digits.tracking.stage_run``'s concern.
Nothing here imports MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from digits.errors import PipelineError

STORE_DATABASE = "mlflow.db"
STORE_ARTIFACTS = "mlartifacts"


class StoreError(PipelineError):
    """The store is damaged, unreachable or points outside the workspace; nothing more is
    written to it (a run it holds is not ended)."""


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


def database_path(store: Store) -> Path | None:
    """The SQLite file of an embedded store; None for a server."""
    if not store.tracking_uri.startswith("sqlite:///"):
        return None
    return Path(store.tracking_uri.removeprefix("sqlite:///"))
