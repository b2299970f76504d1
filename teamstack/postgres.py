"""PostgreSQL for the team stack: Debian's server programs, run as ``postgres`` when root.

MLflow's backend store (database ``mlflow``), the login app's users (``mlflow_auth``) and the
shared Optuna study of ``make search`` (``optuna``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from digits.errors import PipelineError
from teamstack.processes import HOST, spawn, wait_until


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs: ``STACK_PG_BIN``, PATH, or Debian's place."""
    if os.environ.get("STACK_PG_BIN"):
        return Path(os.environ["STACK_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key)
    if debian:
        return Path(debian[-1]).parent
    raise PipelineError(
        "PostgreSQL's server programs (initdb, postgres) are not installed; run "
        "`make stack-servers` as root (Debian's postgresql package) or set STACK_PG_BIN"
    )


def _version_key(path: Path) -> int:
    version = path.parent.parent.name
    return int(version) if version.isdigit() else 0


def postgres_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(os.environ.get("STACK_PG_USER", "postgres"))
    except KeyError:
        raise PipelineError(
            "PostgreSQL refuses to run as root and there is no `postgres` account; install "
            "Debian's postgresql package (it creates one) or set STACK_PG_USER"
        ) from None


def _as_account(account: pwd.struct_passwd | None) -> dict:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _check_reachable(folder: Path, account: pwd.struct_passwd) -> None:
    """Every parent of ``folder`` must let the PostgreSQL account through (o+x)."""
    for parent in [folder.resolve(), *folder.resolve().parents]:
        mode = parent.stat()
        if mode.st_uid != account.pw_uid and not mode.st_mode & 0o001:
            raise PipelineError(
                f"PostgreSQL runs as {account.pw_name!r}, which cannot enter {parent}; "
                "put the stack folder where every user may enter (STACK_DIR=...) "
                f"or `chmod o+x {parent}`"
            )


def start_postgres(folder: Path, state: dict) -> None:
    binaries = postgres_bin()
    account = postgres_account()
    data = folder / "postgres"
    if account is not None:
        _check_reachable(folder, account)
    if not (data / "PG_VERSION").exists():
        data.mkdir(mode=0o700, exist_ok=True)
        password_file = folder / "postgres.pw"
        password_file.write_text(state["postgres_password"] + "\n")
        if account is not None:
            os.chown(data, account.pw_uid, account.pw_gid)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        try:
            subprocess.run(
                [
                    str(binaries / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    "stack",
                    "--pwfile",
                    str(password_file),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                cwd="/",
                **_as_account(account),
            )
        except subprocess.CalledProcessError as error:
            raise PipelineError(f"initdb failed: {error.stderr.decode().strip()}") from None
        finally:
            password_file.unlink()
    port = state["ports"]["postgres"]
    spawn(
        folder,
        "postgres",
        [
            str(binaries / "postgres"),
            "-D",
            str(data.resolve()),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "unix_socket_directories=",  # TCP on 127.0.0.1 only
        ],
        dict(os.environ),
        cwd="/",
        **_as_account(account),
    )
    wait_until(lambda: _create_databases(state), "PostgreSQL", folder, "postgres")


def postgres_uri(state: dict, database: str) -> str:
    return (
        f"postgresql://stack:{state['postgres_password']}@{HOST}:"
        f"{state['ports']['postgres']}/{database}"
    )


def _create_databases(state: dict) -> bool:
    import psycopg

    uri = postgres_uri(state, "postgres")
    with psycopg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        # optuna: the shared study of `make search` (docs/experiments.md), via SEARCH_STORAGE.
        for database in ("mlflow", "mlflow_auth", "optuna"):
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {database}")
    return True
