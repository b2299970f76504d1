"""PostgreSQL for the team stack: Debian's server programs, run as ``postgres`` when root.

MLflow's backend store (database ``mlflow``), the login app's users (``mlflow_auth``) and the
shared Optuna study of ``make search`` (``optuna``). Each database has a role of its own name
that owns it and is the only one that may connect to it; none of them is a superuser or may
create roles or databases. The superuser ``stack`` that initdb makes is the stack's alone
(its password stays in ``stack.json``): members get the ``optuna`` role only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from digits.errors import PipelineError
from teamstack.files import SERVER_UMASK, create_private
from teamstack.processes import HOST, spawn, wait_until

SUPERUSER = "stack"
# Each database, owned by and reachable only with the role of the same name.
DATABASES = ("mlflow", "mlflow_auth", "optuna")


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


def server_group() -> int | None:
    """The group of the account PostgreSQL runs as when it is not us (we are root), which
    must pass through the stack's folder; None when PostgreSQL runs as us."""
    try:
        account = postgres_account()
    except PipelineError:
        return None  # start_postgres says what is missing
    return None if account is None else account.pw_gid


def _as_account(account: pwd.struct_passwd | None) -> dict:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _check_reachable(folder: Path, account: pwd.struct_passwd) -> None:
    """Every parent of ``folder`` must let the PostgreSQL account through (o+x); the folder
    itself lets its group, the account's, through (``stack.prepare_folder``)."""
    for parent in folder.resolve().parents:
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
        data.chmod(0o700)
        password_file = folder / "postgres.pw"
        password_file.unlink(missing_ok=True)  # left by an initdb that was killed
        owner = None if account is None else (account.pw_uid, account.pw_gid)
        # 0600 and the account's before the password is in it (initdb must read it).
        with os.fdopen(create_private(password_file, owner), "w") as handle:
            handle.write(state["postgres_password"] + "\n")
        if owner is not None:
            os.chown(data, *owner)
        try:
            subprocess.run(
                [
                    str(binaries / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    SUPERUSER,
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
                umask=SERVER_UMASK,
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
    """The URL of ``database`` signed in as its own role (``postgres``: the superuser's)."""
    if database == "postgres":
        user, password = SUPERUSER, state["postgres_password"]
    else:
        user, password = database, state["postgres_roles"][database]
    return f"postgresql://{user}:{password}@{HOST}:{state['ports']['postgres']}/{database}"


def _create_databases(state: dict) -> bool:
    """Each database with its own role, every start (the passwords follow ``stack.json``)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(postgres_uri(state, "postgres"), autocommit=True) as connection:
        # Members reach only their own database: not the superuser's, nor a template.
        for database in ("postgres", "template1"):
            connection.execute(
                sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(database)
                )
            )
        for database in DATABASES:
            role = sql.Identifier(database)
            password = sql.Literal(state["postgres_roles"][database])
            exists = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (database,)
            ).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            connection.execute(
                sql.SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS PASSWORD {}"
                ).format(verb, role, password)
            )
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if found is None:
                connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
            else:
                connection.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
                _hand_over_tables(state, database)
            connection.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
    return True


def _hand_over_tables(state: dict, database: str) -> None:
    """Tables a stack made before the roles existed belong to the superuser: give them, and
    their sequences and views, to the database's role."""
    import psycopg
    from psycopg import sql

    uri = postgres_uri(state, "postgres").rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(uri, autocommit=True) as connection:
        # Tables first: a table's own sequences change owner with it.
        for kind, word in (("r", "TABLE"), ("p", "TABLE"), ("v", "VIEW"), ("S", "SEQUENCE")):
            owned = connection.execute(
                "SELECT c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = %s "
                "AND pg_get_userbyid(c.relowner) = %s",
                (kind, SUPERUSER),
            ).fetchall()
            for (name,) in owned:
                connection.execute(
                    sql.SQL("ALTER {} public.{} OWNER TO {}").format(
                        sql.SQL(word), sql.Identifier(name), sql.Identifier(database)
                    )
                )
