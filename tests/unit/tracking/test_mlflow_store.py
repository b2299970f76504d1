import contextlib
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from digits.errors import PipelineError
from digits.tracking import mlflow_store, store_access, store_checks


def test_workspace_is_dvc_root_else_the_working_folder(tmp_path):
    assert mlflow_store.workspace_root({"DVC_ROOT": str(tmp_path / "ws")}, Path("/elsewhere")) == (
        tmp_path / "ws"
    )
    assert mlflow_store.workspace_root({}, tmp_path) == tmp_path


def test_a_root_inside_a_dvc_temporary_copy_maps_back_to_the_workspace(tmp_path):
    copy = tmp_path / "ws" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    assert mlflow_store.workspace_root({"DVC_ROOT": str(copy)}, Path("/x")) == tmp_path / "ws"
    assert mlflow_store.workspace_root({}, copy) == tmp_path / "ws"


def test_embedded_store_is_absolute_and_at_the_workspace_root(tmp_path):
    copy = tmp_path / "ws" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    store = mlflow_store.resolve_store({"DVC_ROOT": str(tmp_path / "ws")}, copy)
    assert store.tracking_uri == f"sqlite:///{tmp_path}/ws/mlflow.db"
    assert store.artifact_location == f"file://{tmp_path}/ws/mlartifacts"
    assert store.lock_path == tmp_path / "ws" / "mlflow.db.lock"


def test_tracking_uri_from_the_environment_wins(tmp_path):
    store = mlflow_store.resolve_store(
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "DVC_ROOT": str(tmp_path)}, tmp_path
    )
    assert (store.tracking_uri, store.artifact_location, store.lock_path) == (
        "http://127.0.0.1:5000",
        None,
        None,
    )


def test_a_relative_sqlite_uri_is_taken_from_the_workspace_not_the_copy(tmp_path):
    store = mlflow_store.resolve_store(
        {"MLFLOW_TRACKING_URI": "sqlite:///runs/track.db", "DVC_ROOT": str(tmp_path)},
        tmp_path / ".dvc" / "tmp" / "exps" / "tmp1",
    )
    assert store.tracking_uri == f"sqlite:///{tmp_path}/runs/track.db"
    assert store.artifact_location == f"file://{tmp_path}/runs/mlartifacts"


# A damaged store (issue 19, item 4): refused with one line naming the file; never modified.


def store_in(folder: Path, store_template: Path) -> mlflow_store.Store:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(store_template, folder / "mlflow.db")
    return mlflow_store.resolve_store({"DVC_ROOT": str(folder)}, folder)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def an_other_database(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE notes (text TEXT)")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
        (lambda path: path.write_bytes(b"<html>not a database</html>"), "is not an SQLite"),
        (lambda path: path.write_bytes(truncated(path.read_bytes())), "is damaged"),
        (an_other_database, "is an SQLite database but not an MLflow store"),
    ],
    ids=["empty", "not-sqlite", "truncated", "other-sqlite"],
)
def test_a_damaged_store_is_refused_and_left_as_it_is(tmp_path, store_template, damage, problem):
    store = store_in(tmp_path / "ws", store_template)
    database = tmp_path / "ws" / "mlflow.db"
    if damage is an_other_database:
        database.unlink()
    damage(database)
    before = database.read_bytes()

    with pytest.raises(mlflow_store.StoreError) as raised:
        store_access.open_store(store, "digits")

    message = str(raised.value)
    assert message.startswith(f"{database} {problem}")
    assert "\n" not in message
    assert f"mv '{database}' '{database}.damaged'" in message
    assert str(tmp_path / "ws" / "mlartifacts") in message, "says where the artifacts are"
    assert database.read_bytes() == before, "the store was modified"
    assert isinstance(raised.value, PipelineError)


def test_a_missing_store_is_created(tmp_path):
    store = mlflow_store.resolve_store({"DVC_ROOT": str(tmp_path)}, tmp_path)
    assert store_access.open_store(store, "digits")
    assert (tmp_path / "mlflow.db").stat().st_size > 0


# A moved workspace: MLflow cannot change the absolute artifact locations it recorded, so the
# store is refused (nothing logs into, or re-creates, the old folder) with what to do.


def test_a_moved_store_is_refused_with_what_to_do_and_left_as_it_is(tmp_path, store_template):
    import mlflow

    old = tmp_path / "old"
    store = store_in(old, store_template)
    experiment = store_access.open_store(store, "digits")
    mlflow.MlflowClient(store.tracking_uri).create_run(experiment)
    new = tmp_path / "new"
    old.rename(new)
    before = (new / "mlflow.db").read_bytes()

    moved = mlflow_store.resolve_store({"DVC_ROOT": str(new)}, new)
    with pytest.raises(mlflow_store.StoreError) as refused:
        store_access.open_store(moved, "digits")

    message = str(refused.value)
    assert f"was made in {old}, and this workspace is {new}" in message
    assert f"Move the workspace back to {old}" in message
    assert f"mv '{new / 'mlflow.db'}' '{new / 'mlflow.db'}.moved'" in message
    assert "\n" not in message
    assert (new / "mlflow.db").read_bytes() == before
    assert not old.exists(), "the old workspace folder was re-created"


def test_a_moved_store_set_aside_as_the_refusal_says_gives_a_new_store(tmp_path, store_template):
    old = tmp_path / "old"
    store_access.open_store(store_in(old, store_template), "digits")
    new = tmp_path / "new"
    old.rename(new)
    (new / "mlflow.db").rename(new / "mlflow.db.moved")

    moved = mlflow_store.resolve_store({"DVC_ROOT": str(new)}, new)
    assert store_access.open_store(moved, "digits")
    assert not old.exists()


def test_an_experiment_whose_artifacts_live_outside_the_workspace_is_refused(
    tmp_path, store_template
):
    import mlflow

    store = store_in(tmp_path / "ws", store_template)
    mlflow.MlflowClient(store.tracking_uri).create_experiment(
        "digits", artifact_location=(tmp_path / "outside").as_uri()
    )
    with pytest.raises(mlflow_store.StoreError, match=r"outside this workspace's file://"):
        store_access.open_store(store, "digits")
    assert not (tmp_path / "outside").exists()


def test_http_calls_get_a_timeout_and_retry_budget_unless_the_user_set_one():
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}
    store_checks.bound_requests(environ)
    assert environ == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "300",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    }


def test_an_mlflow_call_to_a_silent_or_closed_server_becomes_one_store_error(monkeypatch):
    """What a stage sees when the server stops answering mid-run: MLflow's own timeout and
    retry settings end the call, and the error is one line naming the server."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # accepted by the kernel, never answered
        silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with (
            pytest.raises(mlflow_store.StoreError, match=r"did not answer within 1 s") as raised,
            store_checks.store_errors(mlflow_store.Store(silent, None, None)),
        ):
            mlflow.MlflowClient(silent).get_run("0123456789abcdef0123456789abcdef")
        assert time.monotonic() - started < 10
        assert str(raised.value).startswith(f"MLflow tracking at {silent} failed")
    finally:
        listener.close()
    with (
        pytest.raises(mlflow_store.StoreError, match=r"could not be reached after 0 retries"),
        store_checks.store_errors(mlflow_store.Store(silent, None, None)),
    ):
        mlflow.MlflowClient(silent).get_run("0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, r"refused the login \(HTTP 401\): check MLFLOW_TRACKING_USERNAME"), (403, r"HTTP 403")],
)
def test_a_server_that_refuses_the_login_becomes_one_store_error(monkeypatch, status, message):
    """MLflow's basic-auth app answers a wrong password with a plain-text 401 (403: a user
    without permission); the stage names the server and the settings to check."""
    import http.server
    import threading

    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"You are not authenticated. Please provide valid credentials."
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with (
            pytest.raises(mlflow_store.StoreError, match=message) as raised,
            store_checks.store_errors(mlflow_store.Store(uri, None, None)),
        ):
            mlflow.MlflowClient(uri).get_run("0123456789abcdef0123456789abcdef")
        assert str(raised.value).startswith(f"MLflow tracking at {uri} failed")
    finally:
        server.shutdown()
        server.server_close()
