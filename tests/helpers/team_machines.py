"""The team stack for tests/e2e/test_team.py: a running stack (the script `make stack` runs,
on free ports of 127.0.0.1, stopped by its process ids at the end), an MLflow client signed
in to it, two machines (clones of one bare git repository) and what a team member types."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, ProjectCopy, make_project, make_tiny_mirror
from ruamel.yaml import YAML

STACK = [sys.executable, "-m", "teamstack.stack"]
EXPERIMENT = "digits"
A_EXPERIMENT = "a-steps-30"  # the experiment machine A runs and pushes


def require_team_stack() -> None:
    """Skip without the team extra or PostgreSQL, except in CI (CI=true), where it fails."""
    try:
        import boto3  # noqa: F401
        import dvc_s3  # noqa: F401
        import psycopg  # noqa: F401

        from teamstack.postgres import postgres_bin

        postgres_bin()
    except Exception as error:
        message = f"team stack not installed ({error}); `make install-team stack-servers`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def read_env(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``.stack/env``."""
    settings = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            settings[name] = value
    return settings


def stack_command(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STACK, *args, "--dir", str(folder)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[dict]:
    """A running stack in a temporary folder: its settings (``env``) and where it lives."""
    require_team_stack()
    from digits.runtime.local_servers import free_ports

    # PostgreSQL runs as `postgres` when we are root: the folder must let that account in,
    # and pytest's own temporary folders are private to root.
    folder = Path(tempfile.mkdtemp(prefix="team-stack-"))
    folder.chmod(0o755)
    settings = ("STACK_S3_PORT", "STACK_PG_PORT", "STACK_MLFLOW_PORT")
    ports = {setting: str(port) for setting, port in zip(settings, free_ports(3), strict=True)}
    try:
        started = time.monotonic()
        result = stack_command(folder / "stack", "start", "--no-dvc", **ports)
        cold_seconds = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"\nmake stack (cold): {cold_seconds:.1f} s")
        env = read_env(folder / "stack" / "env")
        admin = read_env(folder / "stack" / "admin.env")
        yield {"folder": folder / "stack", "env": env, "admin": admin, "ports": ports}
    finally:
        stopped = stack_command(folder / "stack", "stop")
        print(stopped.stdout, stopped.stderr)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(stack) -> Iterator:
    """An MlflowClient signed in with the credentials of ``.stack/env``."""
    import mlflow

    saved = {name: os.environ.get(name) for name in stack["env"]}
    os.environ.update(stack["env"])
    try:
        yield mlflow.MlflowClient(stack["env"]["MLFLOW_TRACKING_URI"])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3(stack):
    import boto3

    env = stack["env"]
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def machine_env(base: dict[str, str], stack) -> dict[str, str]:
    """A machine's shell after `source .stack/env`: the tracking server and its login."""
    env = {**base, **stack["env"]}
    # DVC takes its remote from .dvc/config.local, as the README says, not from AWS_*.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(name)
    return env


def add_team_remote(machine: ProjectCopy, stack) -> None:
    """What docs/team.md tells a team member to run once in a new clone, after
    `source .stack/env`: the keys go from the environment to .dvc/config.local, never on a
    command line."""
    result = subprocess.run(
        [*STACK, "remote", "--project", str(machine.root)],
        cwd=REPO_ROOT,
        env={**machine.env, **stack["env"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def lock_md5(machine: ProjectCopy, stage: str, path: str) -> str:

    lock = YAML(typ="safe", pure=True).load((machine.root / "dvc.lock").read_text())
    (out,) = [out for out in lock["stages"][stage]["outs"] if out["path"] == path]
    return out["md5"]


@pytest.fixture(scope="module")
def machines(stack, server, tmp_path_factory) -> dict[str, ProjectCopy]:
    """Machine A trained, committed, pushed (git, DVC with run-cache, an experiment)."""
    folder = tmp_path_factory.mktemp("team")
    bare = folder / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    a = make_project(folder / "a", make_tiny_mirror(folder))
    a = ProjectCopy(a.root, machine_env(a.env, stack))
    a.set_params({"tracking": {"enabled": True}})
    a.run("git", "commit", "-qam", "track on the team server")
    a.run("git", "remote", "add", "origin", str(bare))

    # Starting the running stack again starts nothing and sets the project's DVC remote.
    again = subprocess.run(
        [*STACK, "start", "--dir", str(stack["folder"]), "--project", str(a.root)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stdout and again.stdout.count("already running") == 3
    assert "team" in (a.root / ".dvc" / "config.local").read_text()

    a.run("dvc", "repro")
    a.run("git", "add", "-A")
    a.run("git", "commit", "-qm", "baseline trained on A")
    a.run("git", "push", "-q", "origin", "main")
    a.run("dvc", "push", "--run-cache")
    a.run("dvc", "exp", "run", "-n", A_EXPERIMENT, "-S", "train.steps=30", "evaluate")
    a.run("dvc", "exp", "push", "--run-cache", "origin", A_EXPERIMENT)
    # Back to the committed baseline in A's workspace.
    a.run("git", "reset", "-q", "--hard")
    a.run("dvc", "checkout", "--force")

    b_root = folder / "b"
    subprocess.run(["git", "clone", "-q", str(bare), str(b_root)], check=True)
    b = ProjectCopy(b_root, a.env)
    add_team_remote(b, stack)
    return {"a": a, "b": b}


def runs(server) -> list:
    experiment = server.get_experiment_by_name(EXPERIMENT)
    return server.search_runs([experiment.experiment_id], max_results=1000)


def queue_is_idle(machine: ProjectCopy) -> bool:
    status = machine.run("dvc", "queue", "status").stdout
    return not any(word in status for word in ("Queued", "Running"))


def get(uri: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=5")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
