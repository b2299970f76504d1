"""Shared fixtures: a tiny generated dataset, a catalog for it, and a local HTTP server."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.idxdata import write_dataset
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from digits.data.catalog import load_dataset
from digits.params import update_params_file
from digits.runtime.checkout import copy_checkout
from digits.runtime.cpu import prefer_onednn


def pytest_configure(config):
    """Tests that run TensorFlow in-process use the kernels the stages choose
    (``digits.entry``): set before any test module imports TensorFlow.

    Only ``digits`` is installed; ``stages``, ``review``, ``search`` and ``teamstack`` are the
    checkout's scripts, which a user runs from its root. A test that runs one as a process from
    a scratch folder finds them through ``PYTHONPATH`` (after that folder: a project copy's own
    scripts come first).
    """
    prefer_onednn()
    checkout = str(REPO_ROOT)
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    if checkout not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, checkout])


@dataclass
class TinyMirror:
    """A mirror folder holding ``tiny/<file>.gz`` and a catalog that verifies it."""

    root: Path
    catalog: Path
    entry: dict

    @property
    def folder(self) -> Path:
        return self.root / "tiny"

    def dataset(self, mirrors: tuple[str, ...] = ()):
        """The ``tiny`` dataset with the given public mirrors."""
        self.entry["mirrors"] = list(mirrors)
        write_catalog(self.catalog, {"tiny": self.entry})
        return load_dataset("tiny", self.catalog)


def write_catalog(path: Path, entries: dict) -> None:
    """Write a datasets.yaml holding ``entries``."""
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(entries, stream)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test from its own temporary folder: stages write only inside the working
    directory, and a test must never write into the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_tiny_mirror(folder: Path) -> TinyMirror:
    """Generate 120 train and 40 test images in ``<folder>/mirror/tiny`` and their catalog."""
    root = folder / "mirror"
    entry = write_dataset(root / "tiny")
    catalog = folder / "datasets.yaml"
    write_catalog(catalog, {"tiny": entry})
    return TinyMirror(root, catalog, entry)


@pytest.fixture
def tiny_mirror(tmp_path: Path) -> TinyMirror:
    """A generated dataset of 120 train and 40 test images in ``<tmp>/mirror/tiny``."""
    return make_tiny_mirror(tmp_path)


@dataclass
class Route:
    """What the server answers for one path: a queue of (status, body, delay_s) responses.

    The last response repeats once the queue is down to one. A callable body streams: it is
    given the response stream, with no Content-Length, and writes until it returns.
    """

    responses: list[tuple[int, bytes | Callable, float]]
    hits: int = 0


@dataclass
class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with scripted responses per path."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)

    def serve(self, path: str, *responses: tuple[int, bytes, float]) -> None:
        self.routes[path] = Route(list(responses))


@pytest.fixture
def http_server() -> Iterator[FakeServer]:
    """Serve scripted responses on a free port of 127.0.0.1; unknown paths get 404."""
    server_state: FakeServer

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = server_state.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            route.hits += 1
            status, body, delay = route.responses[0]
            if len(route.responses) > 1:
                route.responses.pop(0)
            try:
                self.send_response(status)
                if callable(body):  # a streaming body: it writes until it returns
                    self.end_headers()
                    body(self.wfile)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if delay:
                    self.wfile.flush()
                    time.sleep(delay)
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format, *args):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state = FakeServer(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


# Small enough that the whole pipeline runs in seconds on generated data.
TINY_PARAMS = {
    "data": {"dataset": "tiny", "validation_size": 20},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 16},
    "evaluate": {"error_examples": 9},
    # The tracking tests turn MLflow on; the other tests show the pipeline runs without it.
    "tracking": {"enabled": False},
}


@dataclass
class ProjectCopy:
    """A copy of this repository in its own git repo, set up for the tiny dataset."""

    root: Path
    env: dict[str, str]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in the copy; on failure the assertion shows its output."""
        result = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def set_params(self, updates: dict) -> None:
        """Merge ``{section: {key: value}}`` into the copy's params.yaml, as ``-S`` would; a
        key the file lacks is an error."""
        update_params_file(self.root / "params.yaml", updates)


@pytest.fixture
def project(tmp_path: Path, tiny_mirror: TinyMirror) -> ProjectCopy:
    """The project in ``<tmp>/project`` (its own git repo), on the tiny dataset."""
    return make_project(tmp_path / "project", tiny_mirror)


def make_project(root: Path, tiny_mirror: TinyMirror) -> ProjectCopy:
    """Copy the project to ``root``, set it up for the tiny dataset and commit it."""
    copy_checkout(REPO_ROOT, root)
    write_catalog(root / "datasets.yaml", {"tiny": tiny_mirror.entry})
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA_MIRROR": str(tiny_mirror.root),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    # Runs go to the copy's own store, whatever the developer's shell points MLflow at.
    env.pop("MLFLOW_TRACKING_URI", None)
    copy = ProjectCopy(root, env)
    copy.set_params(TINY_PARAMS)
    copy.run("git", "init", "-q", "-b", "main")
    copy.run("git", "add", "-A")
    copy.run("git", "commit", "-q", "-m", "project under test")
    return copy


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store: creating its schema takes seconds, copying it does not."""
    import mlflow

    database = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


@pytest.fixture(scope="session")
def first_full_run(tmp_path_factory) -> tuple[ProjectCopy, str]:
    """A fresh project copy after its first complete `dvc repro`, committed, and what that
    `dvc repro` printed; built once per session."""
    base = tmp_path_factory.mktemp("committed")
    template = make_project(base / "project", make_tiny_mirror(base))
    printed = template.run("dvc", "repro").stdout
    template.run("git", "add", "-A")
    template.run("git", "commit", "-q", "-m", "baseline run")
    return template, printed


@pytest.fixture(scope="session")
def committed_template(first_full_run: tuple[ProjectCopy, str]) -> ProjectCopy:
    """A project copy after a complete `dvc repro`, committed; built once per session."""
    return first_full_run[0]


@pytest.fixture
def committed(tmp_path: Path, committed_template: ProjectCopy) -> ProjectCopy:
    """Its own copy of ``committed_template``: a project whose pipeline ran and was committed.

    Copying (git repo and DVC cache included) takes a fraction of the second a full
    `dvc repro` needs; DVC's ``.dvc/tmp`` state is left behind, so it rebuilds it for the copy.
    """
    root = tmp_path / "project"
    shutil.copytree(
        committed_template.root,
        root,
        symlinks=True,
        ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [],
    )
    return ProjectCopy(root, committed_template.env)


@pytest.fixture
def logged_model(tmp_path, store_template, monkeypatch):
    """A small CNN logged as the train stage logs it, into a SQLite store in tmp_path.

    Returns the Keras model and the logged model's URI; MLFLOW_TRACKING_URI names the store.
    """
    import mlflow
    from helpers.idxdata import tiny_split

    from digits.model.networks import build_model
    from digits.params import load_params
    from digits.params import replace as params_replace
    from digits.tracking.logger import Tracker

    database = tmp_path / "mlflow.db"
    shutil.copy(store_template, database)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    model = build_model(params_replace(params, conv1_filters=4, conv2_filters=8, fc_size=16))
    experiment = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        example = tiny_split(1, seed=0).x
        uri = Tracker(run.info.run_id).log_model(model, example, name="tiny-cnn")
    return model, uri
