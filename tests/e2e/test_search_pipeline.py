"""End to end on tiny data: an Optuna search (search/tune.py) that is interrupted and
resumed, and two searches sharing one PostgreSQL study."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProjectCopy, make_project, make_tiny_mirror
from helpers.dvcqueue import WAIT_S, experiments, with_data
from ruamel.yaml import YAML

from digits.runtime.local_servers import free_port
from search.experiments import SUCCESS

# Each test runs several experiments; on a loaded 2-core machine that can take many minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Small ranges that tiny data trains in seconds; two params, as a user would start.
TINY_SPACE = {
    "study": "tiny",
    "metric": "train.val_accuracy",
    "direction": "maximize",
    "params": {
        "train.fc_size": {"type": "int", "low": 4, "high": 64, "log": True},
        "train.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
    },
}


def write_tiny_space(project: ProjectCopy) -> None:
    with (project.root / "search.yaml").open("w") as stream:
        YAML(typ="safe", pure=True).dump(TINY_SPACE, stream)


def search_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.tune", "--poll-seconds", "1", *args]


def trials_of(storage: str) -> list:
    import optuna

    return optuna.load_study(study_name=TINY_SPACE["study"], storage=storage).get_trials()


def check_trials_match_experiments(trials: list, projects: dict[str, ProjectCopy]) -> dict:
    """Every trial is one finished experiment in exactly one workspace, with its params and
    metric; every search experiment there is a trial. Returns workspace -> trial count."""
    found = {folder: experiments(project) for folder, project in projects.items()}
    owners: dict[str, int] = dict.fromkeys(projects, 0)
    for trial in trials:
        assert trial.state.name == "COMPLETE", (trial.number, trial.state)
        name = trial.user_attrs["dvc.experiment"]
        assert name == f"tiny-{trial.number}"
        holders = [folder for folder, rows in found.items() if name in rows]
        assert len(holders) == 1, (name, holders)
        row = found[holders[0]][name]
        assert trial.user_attrs["workspace"].endswith(holders[0])
        assert row.state == SUCCESS
        assert row.params["train.fc_size"] == trial.params["train.fc_size"]
        assert row.params["train.learning_rate"] == pytest.approx(
            trial.params["train.learning_rate"]
        )
        assert trial.value == row.metrics["train.val_accuracy"]
        owners[holders[0]] += 1
    names = {name for rows in found.values() for name in rows if name.startswith("tiny-")}
    assert len(names) == len(trials)  # no experiment without its trial
    return owners


# Seen on 2026-12-03: after the SIGTERM, `dvc exp show` failed on every retry on the killed
# trial's leftover executor folder (.dvc/tmp/exps/run/<rev>, its .run file gone).
@pytest.mark.extended
def test_an_interrupted_search_resumes_and_ends_with_three_trials(project):
    with_data(project)
    write_tiny_space(project)
    storage = f"sqlite:///{project.root / 'optuna.db'}"
    first = subprocess.Popen(
        search_command("--trials", "3", "--jobs", "2", "--seed", "0"),
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while not (project.root / "optuna.db").exists() or not any(
            trial.state.name == "COMPLETE" for trial in trials_of(storage)
        ):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(1)
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, out + err
    assert "interrupted:" in out and "run the search again" in out
    left = [trial for trial in trials_of(storage) if trial.state.name == "RUNNING"]
    assert left, "no trial was in flight when the search stopped"

    try:
        again = project.run(*search_command("--trials", "3", "--jobs", "2"))
    finally:
        project.run("dvc", "queue", "stop", check=False)
    assert f"resuming: {len(left)} trial(s)" in again.stdout
    assert "3 complete trial(s)" in again.stdout
    trials = trials_of(storage)
    assert [trial.number for trial in trials] == [0, 1, 2]
    check_trials_match_experiments(trials, {project.root.name: project})


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries) with a database `optuna`;
    stopped by its postmaster's process id, also when the test fails."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL's server binaries are not installed (Debian package postgresql)")
    bin_dir = binaries[-1].parent
    # PostgreSQL refuses to run as root; as root, run it as the `postgres` account.
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="search-pg-"))
    data = folder / "data"
    if account:
        os.chown(folder, account.pw_uid, account.pw_gid)

    def as_account():
        if account:
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, preexec_fn=as_account, cwd=folder)

    port = free_port()
    server = None
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "search", "-A", "trust")
        server = subprocess.Popen(
            [
                *(str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)),
                *("-k", str(folder), "-c", "listen_addresses=127.0.0.1"),
            ],
            preexec_fn=as_account,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=folder,
        )
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://search@127.0.0.1:{port}/postgres", autocommit=True
                ) as connection:
                    connection.execute("CREATE DATABASE optuna")
                break
            except psycopg.OperationalError:
                assert server.poll() is None and time.monotonic() < deadline, "no PostgreSQL"
                time.sleep(0.5)
        yield f"postgresql+psycopg://search@127.0.0.1:{port}/optuna"
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
            if server.poll() is None:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_two_searches_against_one_postgresql_study_share_the_trials(tmp_path, postgres):
    machines = {}
    for name in ("machine-a", "machine-b"):
        machine = make_project(tmp_path / name, make_tiny_mirror(tmp_path / f"{name}-data"))
        machines[name] = with_data(machine)
        write_tiny_space(machine)
    searches = {
        name: subprocess.Popen(
            search_command("--trials", "4", "--jobs", "1", "--storage", postgres),
            cwd=machine.root,
            env=machine.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, machine in machines.items()
    }
    outputs = {}
    try:
        for name, search in searches.items():
            outputs[name] = search.communicate(timeout=WAIT_S)
    finally:
        for name, search in searches.items():
            if search.poll() is None:
                search.kill()
            machines[name].run("dvc", "queue", "stop", check=False)
    for name, search in searches.items():
        assert search.returncode == 0, outputs[name]
    trials = trials_of(postgres)
    # Both ask while fewer than 4 are complete or running: at most one more when they race.
    assert len(trials) in (4, 5), [trial.number for trial in trials]
    assert [trial.number for trial in trials] == list(range(len(trials)))
    owners = check_trials_match_experiments(trials, machines)
    assert all(count >= 1 for count in owners.values()), owners
