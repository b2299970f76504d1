from pathlib import Path

from stages import mlflow_store


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
