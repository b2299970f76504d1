"""Checking a store before MLflow touches it, and its failures as one line.

An embedded ``mlflow.db`` must be an intact MLflow database (MLflow would otherwise fail with a
traceback, or build a new schema into it), and must keep its artifacts in the workspace it is in
(a store moved or copied with its workspace still names the old folder); a tracking server must
answer within seconds. Every HTTP
call MLflow makes is bounded by its own ``MLFLOW_HTTP_REQUEST_TIMEOUT`` and
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, which get small defaults (``REQUEST_DEFAULTS``) unless the
user set them. A store that fails inside ``store_errors`` ends the stage with one
``StoreError`` line naming the store and what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from digits.tracking.mlflow_store import STORE_ARTIFACTS, Store, StoreError, database_path

# MLflow's defaults (120 s per request, 7 retries) kept a stage waiting minutes on a closed port
# and for ever on a server that never answers; these bound one call to about a minute.
REQUEST_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
PROBE_SECONDS = 5.0  # how long the server may take to answer the check before a stage starts
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_FULL = "database or disk is full"  # SQLite's message for SQLITE_FULL (ENOSPC)
_MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


def bound_requests(environ: MutableMapping[str, str]) -> None:
    """Give MLflow's HTTP timeout and retry budget our defaults where the user set none."""
    for name, value in REQUEST_DEFAULTS.items():
        environ.setdefault(name, value)


def check_server(uri: str, seconds: float = PROBE_SECONDS) -> None:
    """Check that an http(s) tracking server answers at all (any HTTP status) within ``seconds``.

    Raises:
        StoreError: Nothing listens there, or it does not answer in time.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=seconds):
            pass
    except urllib.error.HTTPError:
        return  # it answered: the API calls that follow say more if something is wrong
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, socket.timeout | TimeoutError):
            why = f"did not answer within {seconds:g} s"
        else:
            why = f"could not be reached ({reason})"
        raise StoreError(f"the MLflow tracking server at {uri} {why}; {_SERVER_ADVICE}") from None


_SERVER_ADVICE = (
    "start it or fix MLFLOW_TRACKING_URI, or unset MLFLOW_TRACKING_URI to use this "
    "workspace's own store (mlflow.db); no output of this stage was changed"
)


def check_database(database: Path) -> None:
    """Check that an existing ``mlflow.db`` is an intact MLflow database; never modify it.

    A missing file is fine (MLflow creates the store). An empty file, a file that is not
    SQLite, a damaged one, or an SQLite database of something else is refused: MLflow would
    fail with a traceback, or create a new, empty schema in it.

    Raises:
        StoreError: Names the file, what is wrong and how to move it aside.
    """
    if not database.exists():
        return
    size = database.stat().st_size
    with database.open("rb") as stream:
        header = stream.read(len(_SQLITE_MAGIC))
    problem = None
    if size == 0:
        problem = "is empty (0 bytes), so it holds no runs"
    elif header != _SQLITE_MAGIC:
        problem = f"is not an SQLite database ({size} bytes starting {header[:15]!r})"
    else:
        try:
            with contextlib.closing(sqlite3.connect(database)) as db:
                checked = db.execute("PRAGMA quick_check").fetchall()
                tables = {row[0] for row in db.execute(_TABLES)}
        except sqlite3.DatabaseError as error:
            problem = f"is damaged ({error})"
        else:
            if checked != [("ok",)]:
                problem = f"is damaged ({checked[0][0]})"
            elif tables and not tables >= _MLFLOW_TABLES:
                missing = ", ".join(sorted(_MLFLOW_TABLES - tables))
                problem = f"is an SQLite database but not an MLflow store (no table {missing})"
    if problem:
        aside = database.with_name(f"{database.name}.damaged")
        raise StoreError(
            f"{database} {problem}. It is where this workspace's MLflow runs are kept (their "
            f"artifacts stay in {database.parent / STORE_ARTIFACTS}) and was left as it is: "
            f"move it aside (`mv '{database}' '{aside}'`), then restore a backup to "
            f"{database.name}, or salvage what SQLite can read (`sqlite3 '{aside}' .recover "
            f"| sqlite3 '{database}'`); without a {database.name} the next stage starts a new, "
            "empty store"
        )


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"


def check_inside(store: Store, location: str, what: str) -> None:
    """Refuse an artifact location of an embedded store outside its ``mlartifacts`` folder.

    Raises:
        StoreError: ``location`` is elsewhere; ``what`` names whose location it is.
    """
    root = store.artifact_location
    if root is None or location == root or location.startswith(f"{root}/"):
        return
    old_workspace = _workspace_of(location)
    if old_workspace is not None:
        database = database_path(store)
        raise StoreError(
            f"{database} was made in {old_workspace}, and this workspace is {database.parent}: "
            "MLflow records artifact locations as absolute paths and cannot change them, so "
            f"nothing is logged into the old folder. Move the workspace back to {old_workspace}, "
            f"or set this store aside and start a new one here (`mv '{database}' "
            f"'{database}.moved' && mv '{database.parent / STORE_ARTIFACTS}' "
            f"'{database.parent / STORE_ARTIFACTS}.moved'`)"
        )
    raise StoreError(
        f"{what} keeps its artifacts in {location}, outside this workspace's {root}; nothing "
        "is logged outside the workspace: set tracking.experiment to a new name, or "
        "MLFLOW_TRACKING_URI to the store this one belongs to"
    )


def _workspace_of(location: str) -> Path | None:
    """The workspace whose embedded store's artifacts ``location`` is under, if it is one."""
    if not location.startswith("file://"):
        return None
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
    for folder in (path, *path.parents):
        if folder.name == STORE_ARTIFACTS:
            return folder.parent
    return None


def prepare(store: Store) -> None:
    """Check the store before MLflow opens it (see the module docstring); call under its lock.

    Raises:
        StoreError: The store is damaged or the server does not answer.
    """
    bound_requests(os.environ)
    # MLflow logs each SQLite error with its traceback, then raises it again: store_errors
    # reports the raised one in one line, so the logged copy is dropped.
    logging.getLogger("mlflow.store.db.utils").addFilter(_drop_logged_tracebacks)
    database = database_path(store)
    if database is None:
        check_server(store.tracking_uri)
        return
    check_database(database)


def _drop_logged_tracebacks(record: logging.LogRecord) -> bool:
    return record.exc_info is None


UNCHANGED = "no output of this stage was changed"


@contextlib.contextmanager
def store_errors(store: Store, outcome: str = "its run is left RUNNING") -> Iterator[None]:
    """Turn a store that fails or stops answering, inside the block, into one ``StoreError``.

    MLflow reports an HTTP timeout or refused connection, after its retries, as an
    ``MlflowException`` (the ``requests`` error as its cause or context); SQLite errors come
    from SQLAlchemy. Other exceptions pass unchanged. ``outcome`` ends the message: what the
    failure left behind.
    """
    try:
        yield
    except Exception as error:
        reason = _store_failure(error)
        if reason is None:
            raise
        database = database_path(store)
        if database is not None and _SQLITE_FULL in reason:
            # SQLite rolls the failed write back: the file holds every run it held before.
            raise StoreError(
                f"cannot write {database}: {reason}; free some space on its disk and rerun; "
                f"the runs it holds are intact; {outcome}"
            ) from None
        raise StoreError(
            f"MLflow tracking at {store.tracking_uri} failed: {reason}; start or repair the "
            "store (docs/troubleshooting.md), or unset MLFLOW_TRACKING_URI to use this "
            f"workspace's own store; {outcome}"
        ) from None


def _store_failure(error: BaseException) -> str | None:
    """Why ``error`` (or what caused it) is the store's failure, or None when it is not."""
    import requests
    import sqlalchemy.exc

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        # With retries, urllib3 reports a read timeout as a ConnectionError of MaxRetryError.
        # (NewConnectionError, a refused connection, subclasses urllib3's TimeoutError.)
        reason = getattr(error.args[0], "reason", None) if error.args else None
        urllib3_errors = requests.packages.urllib3.exceptions
        timed_out = isinstance(reason, urllib3_errors.TimeoutError) and not isinstance(
            reason, urllib3_errors.NewConnectionError
        )
        if isinstance(error, requests.exceptions.Timeout) or timed_out:
            timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
            return f"the server did not answer within {timeout} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"
        if isinstance(error, requests.exceptions.ConnectionError):
            retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
            return (
                f"the server could not be reached after {retries} retries "
                "(MLFLOW_HTTP_REQUEST_MAX_RETRIES)"
            )
        code = getattr(error, "error_code", None)
        if code == "UNAUTHENTICATED":
            return (
                "the server refused the login (HTTP 401): check MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (for `make stack`: `source .stack/env`)"
            )
        if code == "PERMISSION_DENIED":
            return (
                f"the server refused the request (HTTP 403) for user "
                f"{os.environ.get('MLFLOW_TRACKING_USERNAME')!r}: ask its admin for permission"
            )
        if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.DatabaseError):
            return f"the database failed ({str(error.orig).splitlines()[0]})"
        error = error.__cause__ or error.__context__
    return None
