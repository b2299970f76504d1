"""The team stack's start and stop, without starting servers (tests/e2e/test_team.py
starts them)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO_ROOT

from digits.runtime.local_servers import free_ports
from teamstack import files, postgres, processes, s3, stack


def run_stack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "teamstack.stack", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_port_in_use_stops_the_start_with_one_line_and_starts_nothing(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        postgres, mlflow = free_ports(2)
        result = run_stack(
            "start",
            "--dir",
            str(tmp_path / "stack"),
            "--no-dvc",
            STACK_S3_PORT=str(port),
            STACK_PG_PORT=str(postgres),
            STACK_MLFLOW_PORT=str(mlflow),
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1, needed by the S3 server, is in use; stop what "
        f"holds it (`ss -ltnp 'sport = :{port}'`) or choose another port "
        "(STACK_S3_PORT=... for a new stack folder)"
    )
    assert not (tmp_path / "stack" / "pids").exists()


def test_stop_ends_only_processes_the_stack_started(tmp_path: Path):
    folder = tmp_path / "stack"
    (folder / "pids").mkdir(parents=True)
    # A pid file naming someone else's process (a reused pid): stop must leave it alone.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "pids" / "s3.pid").write_text(f"{stranger.pid}\n")
        result = run_stack("stop", "--dir", str(folder))
        assert result.returncode == 0, result.stderr
        assert stranger.poll() is None
        assert not (folder / "pids" / "s3.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_seaweedfs_ports_are_distinct_even_when_the_kernel_repeats_one(tmp_path, monkeypatch):
    """Seen: master and filer both got 53639 from two calls to free_port, and the filer could
    not bind. A folder that holds such a repeat is mended on the next start."""
    offered = iter([40001, 40001, 8333, 40002, 40002, 40003, 40004, 40005, 40006, 40007, 40008])
    monkeypatch.setattr(stack, "free_port", lambda: next(offered))
    folder = tmp_path / "stack"
    ports = stack.load_state(folder, dict.fromkeys(stack.PORT_SETTINGS))["ports"]
    weed = [ports[f"weed_{name}"] for name in s3.WEED_INTERNAL]
    assert len(set(weed)) == len(weed), ports
    assert not set(weed) & {ports["s3"], ports["postgres"], ports["mlflow"]}

    state = json.loads((folder / "stack.json").read_text())
    state["ports"]["weed_filer"] = state["ports"]["weed_master"]
    (folder / "stack.json").write_text(json.dumps(state))
    mended = stack.load_state(folder, dict.fromkeys(stack.PORT_SETTINGS))["ports"]
    assert mended["weed_master"] == ports["weed_master"], "a port in use by the stack stays"
    weed = [mended[f"weed_{name}"] for name in s3.WEED_INTERNAL]
    assert len(set(weed)) == len(weed), mended


def test_stop_ends_the_whole_process_group_it_started(tmp_path: Path):
    folder = tmp_path / "stack"
    folder.mkdir()
    child_file = tmp_path / "child.pid"
    # A server that ignores SIGTERM and has a child (which inherits SIG_IGN): stop escalates
    # to SIGKILL and returns once both have ended.
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(child_file)!r}, 'w').write(str(child.pid)); "
        "time.sleep(60)"
    )
    env = {**os.environ, "STACK_MARK": str(folder.resolve())}
    pid = processes.spawn(folder, "mlflow", [sys.executable, "-c", script], env)
    assert processes.running_pid(folder, "mlflow") == pid
    deadline = time.monotonic() + 30
    while not child_file.exists() or not child_file.read_text():
        assert time.monotonic() < deadline, "the server never started its child"
        time.sleep(0.05)
    child = int(child_file.read_text())

    stack.stop(folder)

    assert processes.running_pid(folder, "mlflow") is None
    for process in (pid, child):
        # Gone, or a zombie: exited, waiting for its parent (this test, or init) to reap it.
        try:
            state = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state == "Z", f"process {process} of the stopped group still runs ({state})"
    os.waitpid(pid, 0)


def dvc_project(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    return root


def test_a_secret_starting_with_a_dash_reaches_the_dvc_config_whole(tmp_path: Path, monkeypatch):
    dvc_project(tmp_path)
    stack.configure_dvc(tmp_path, "http://127.0.0.1:8333", "-access", "-tvU3vrYsS7X")
    config = (tmp_path / ".dvc" / "config.local").read_text()
    assert "access_key_id = -access" in config
    assert "secret_access_key = -tvU3vrYsS7X" in config
    # New stacks never make such a secret (other tools take it for an option, too).
    tokens = iter(["-first", "second"])
    monkeypatch.setattr(stack.secrets, "token_urlsafe", lambda size: next(tokens))
    assert stack.new_secret() == "second"


def test_the_dvc_remote_is_written_0600_without_the_secret_on_a_command_line(tmp_path: Path):
    """`remote` takes the keys from the environment (`source .stack/env`), never from argv,
    and the file holding them is 0600 even with a umask of 022; one DVC itself wrote 0644
    before is made 0600 too."""
    project = dvc_project(tmp_path / "project")
    local = project / ".dvc" / "config.local"
    secret = "s3cret" + os.urandom(6).hex()
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": "member",
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    command = [sys.executable, "-m", "teamstack.stack", "remote", "--project", str(project)]
    for existing in (False, True):
        if existing:
            local.unlink()
            subprocess.run(
                [sys.executable, "-m", "dvc", "remote", "add", "--local", "old", "s3://x/y"],
                cwd=project, check=True, umask=0o022,
            )  # fmt: skip
            assert stat.S_IMODE(local.stat().st_mode) == 0o644  # what DVC makes
        result = subprocess.run(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
            umask=0o022, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert secret not in " ".join(command)
        assert stat.S_IMODE(local.stat().st_mode) == 0o600
        written = local.read_text()
        assert f"secret_access_key = {secret}" in written
        assert "url = s3://dvc/store" in written and "remote = team" in written
        listed = subprocess.run(
            [sys.executable, "-m", "dvc", "remote", "list"], cwd=project, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        remotes = [line.split() for line in listed.stdout.splitlines()]
        assert ["team", "s3://dvc/store", "(default)"] in remotes, listed.stdout


def test_remote_without_the_stack_settings_says_what_to_source(tmp_path: Path):
    project = dvc_project(tmp_path)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    }
    result = subprocess.run(
        [sys.executable, "-m", "teamstack.stack", "remote", "--project", str(project)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY not set: "
        "`source .stack/env` (or the team's settings) first"
    )
    assert not (project / ".dvc" / "config.local").exists()


def test_the_state_folder_and_files_are_private_with_a_umask_of_022(tmp_path: Path):
    """stack.json, env and admin.env: 0600 from their creation (``os.open`` with the mode,
    not a chmod after the text is in), and the folder 0700 (0710 for PostgreSQL's group)."""
    folder = tmp_path / "stack"
    previous = os.umask(0o022)
    try:
        state = stack.load_state(folder, dict.fromkeys(stack.PORT_SETTINGS))
        files.write_private(folder / "env", stack.env_lines(state))
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode in (0o700, 0o710), oct(mode)
    if mode == 0o710:  # root: PostgreSQL's account passes through, and only it
        assert folder.stat().st_gid == postgres.server_group()
    for name in ("stack.json", "env"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert sorted(path.name for path in folder.iterdir()) == ["env", "stack.json"]
