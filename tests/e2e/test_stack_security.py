"""The team stack gives a member only what they need, and its files are private.

One stack for the module, started with a umask of 022 by the script `make stack` runs, on
free ports of 127.0.0.1, and stopped by its process ids at the end
(tests/helpers/team_machines.py).
A member is what `.stack/env` holds; the admin is `.stack/admin.env`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.team_machines import read_env, require_team_stack, stack_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack() -> Iterator[dict]:
    """A running stack, started with a umask of 022: its settings and where it lives."""
    require_team_stack()
    from digits.runtime.local_servers import free_ports

    folder = Path(tempfile.mkdtemp(prefix="team-stack-"))
    folder.chmod(0o755)  # PostgreSQL's account (when we are root) must pass through
    settings = ("STACK_S3_PORT", "STACK_PG_PORT", "STACK_MLFLOW_PORT")
    ports = {setting: str(port) for setting, port in zip(settings, free_ports(3), strict=True)}
    previous = os.umask(0o022)  # what most shells have: the stack must not rely on it
    try:
        result = stack_command(folder / "stack", "start", "--no-dvc", **ports)
        os.umask(previous)
        assert result.returncode == 0, result.stdout + result.stderr
        root = folder / "stack"
        yield {
            "folder": root,
            "env": read_env(root / "env"),
            "admin": read_env(root / "admin.env"),
            "state": json.loads((root / "stack.json").read_text()),
        }
    finally:
        os.umask(previous)
        stopped = stack_command(folder / "stack", "stop")
        print(stopped.stdout, stopped.stderr)
        shutil.rmtree(folder, ignore_errors=True)


def mlflow_call(env: dict, path: str, body: dict | None, user: str, password: str) -> tuple:
    """(HTTP status, JSON answer or None) of one request to the tracking server."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        env["MLFLOW_TRACKING_URI"] + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, None


def member(stack) -> tuple[str, str]:
    return stack["env"]["MLFLOW_TRACKING_USERNAME"], stack["env"]["MLFLOW_TRACKING_PASSWORD"]


def admin(stack) -> tuple[str, str]:
    return stack["admin"]["STACK_ADMIN_USERNAME"], stack["admin"]["STACK_ADMIN_PASSWORD"]


def test_every_file_of_the_stack_is_private(stack):
    folder = stack["folder"]
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode in (0o700, 0o710), oct(mode)  # 0710: PostgreSQL's group passes, no more
    if mode == 0o710:
        from teamstack.postgres import server_group

        assert folder.stat().st_gid == server_group()
    loose = []
    for path in folder.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            if mode != 0o700:
                loose.append(f"{oct(mode)} {path}")
        elif path.suffix == ".vif" and path.parent == folder / "s3":
            # SeaweedFS sets its volumes' small info files to 0644 itself, whatever the
            # umask: they hold the volume's version, no bucket data, and sit in a 0700 folder.
            assert stat.S_IMODE((folder / "s3").stat().st_mode) == 0o700
        elif mode != 0o600:
            loose.append(f"{oct(mode)} {path}")
    assert not loose, "\n".join(loose)
    assert not (folder / "postgres.pw").exists()


def test_the_members_env_holds_no_admin_login(stack):
    members = (stack["folder"] / "env").read_text()
    state = stack["state"]
    for secret in (
        stack["admin"]["STACK_ADMIN_PASSWORD"],
        stack["admin"]["STACK_S3_ADMIN_SECRET_ACCESS_KEY"],
        stack["admin"]["STACK_S3_ADMIN_ACCESS_KEY_ID"],
        state["postgres_password"],  # the PostgreSQL superuser's
        state["s3_mlflow_secret_key"],
    ):
        assert secret not in members
    assert "STACK_ADMIN" not in members
    assert stack["env"]["SEARCH_STORAGE"].startswith("postgresql+psycopg://optuna:")


def test_a_member_cannot_create_users_and_only_reads_what_is_not_shared(stack):
    env = stack["env"]
    status, _ = mlflow_call(
        env, "/api/2.0/mlflow/users/create", {"username": "mallory", "password": "x" * 16},
        *member(stack),
    )  # fmt: skip
    assert status == 403
    status, _ = mlflow_call(
        env, "/api/2.0/mlflow/users/update-admin", {"username": "team", "is_admin": True},
        *member(stack),
    )  # fmt: skip
    assert status == 403

    # Someone else's experiment: a member reads it and cannot log into it.
    status, made = mlflow_call(
        env, "/api/2.0/mlflow/experiments/create", {"name": "admins-own"}, *admin(stack)
    )
    assert status == 200
    other = made["experiment_id"]
    read = mlflow_call(
        env, f"/api/2.0/mlflow/experiments/get?experiment_id={other}", None, *member(stack)
    )
    assert read[0] == 200
    status, _ = mlflow_call(
        env, "/api/2.0/mlflow/runs/create", {"experiment_id": other}, *member(stack)
    )
    assert status == 403

    # The team experiment is shared: a member logs runs into it.
    status, found = mlflow_call(
        env, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=digits", None,
        *member(stack),
    )  # fmt: skip
    assert status == 200
    team = found["experiment"]["experiment_id"]
    status, run = mlflow_call(
        env, "/api/2.0/mlflow/runs/create", {"experiment_id": team}, *member(stack)
    )
    assert status == 200, run
    status, _ = mlflow_call(
        env, "/api/2.0/mlflow/runs/log-metric",
        {"run_id": run["run"]["info"]["run_id"], "key": "m", "value": 1.0, "timestamp": 0},
        *member(stack),
    )  # fmt: skip
    assert status == 200


def test_a_members_database_login_reaches_its_own_database_only(stack, tmp_path):
    import psycopg

    uri = stack["env"]["SEARCH_STORAGE"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(uri, autocommit=True) as connection:
        superuser = connection.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert superuser == (False,)
        marker = tmp_path / "ran"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
        assert not marker.exists()
        connection.execute("CREATE TABLE trials_probe (n int)")  # its own database: Optuna's
        connection.execute("DROP TABLE trials_probe")
    base = uri.rsplit("/", 1)[0]
    for database in ("mlflow_auth", "mlflow", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(f"{base}/{database}").close()


def s3_client(env_keys: tuple[str, str], endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env_keys[0],
        aws_secret_access_key=env_keys[1],
        region_name="us-east-1",
    )


def test_a_members_s3_keys_read_and_write_the_two_buckets_and_nothing_else(stack):
    from botocore.exceptions import ClientError

    env = stack["env"]
    client = s3_client(
        (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), env["AWS_ENDPOINT_URL"]
    )
    for bucket in ("dvc", "mlflow"):
        client.put_object(Bucket=bucket, Key="probe/member", Body=b"mine")
        assert client.get_object(Bucket=bucket, Key="probe/member")["Body"].read() == b"mine"
        listed = client.list_objects_v2(Bucket=bucket, Prefix="probe/")
        assert [item["Key"] for item in listed["Contents"]] == ["probe/member"]
        client.delete_object(Bucket=bucket, Key="probe/member")
    for refused in (
        lambda: client.delete_bucket(Bucket="dvc"),
        lambda: client.delete_bucket(Bucket="mlflow"),
        lambda: client.create_bucket(Bucket="members-own"),
    ):
        with pytest.raises(ClientError) as error:
            refused()
        assert error.value.response["Error"]["Code"] == "AccessDenied"
    admin_keys = (
        stack["admin"]["STACK_S3_ADMIN_ACCESS_KEY_ID"],
        stack["admin"]["STACK_S3_ADMIN_SECRET_ACCESS_KEY"],
    )
    buckets = s3_client(admin_keys, env["AWS_ENDPOINT_URL"]).list_buckets()["Buckets"]
    assert {"dvc", "mlflow"} <= {bucket["Name"] for bucket in buckets}
    assert "members-own" not in {bucket["Name"] for bucket in buckets}


def seaweedfs_ports(stack) -> dict[str, int]:
    ports = stack["state"]["ports"]
    return {name: port for name, port in ports.items() if name.startswith("weed_")}


def http_answer(url: str, data: bytes | None = None) -> str:
    """What a program without the stack's certificate gets from ``url``: the HTTP status, or
    the error that ended the attempt."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # it may trust any server: it still has no client cert
    request = urllib.request.Request(url, data=data, method="PUT" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return type(getattr(error, "reason", error)).__name__


def test_seaweedfs_internal_ports_refuse_a_program_without_the_stacks_certificate(stack):
    """Through the filer, the master or a volume server, a local program would bypass the
    S3 keys: without the stack's certificate each port refuses it, over HTTP and HTTPS, and
    gRPC's TLS handshake asks for the certificate it does not have."""
    ports = seaweedfs_ports(stack)
    base = "127.0.0.1"
    # A member's object, which the attempts below try to read and overwrite.
    env = stack["env"]
    client = s3_client(
        (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), env["AWS_ENDPOINT_URL"]
    )
    client.put_object(Bucket="dvc", Key="store/target", Body=b"original")
    attempts = {
        "filer read": (ports["weed_filer"], "/buckets/dvc/store/target", None),
        "filer write": (ports["weed_filer"], "/buckets/dvc/store/target", b"planted"),
        "filer list": (ports["weed_filer"], "/buckets/dvc/store/", None),
        "master assign": (ports["weed_master"], "/dir/assign", None),
        "volume status": (ports["weed_volume"], "/status", None),
    }
    answers = {}
    for name, (port, path, data) in attempts.items():
        for scheme in ("http", "https"):
            answers[f"{name} over {scheme}"] = http_answer(f"{scheme}://{base}:{port}{path}", data)
    print(json.dumps(answers, indent=1))
    for attempt, answer in answers.items():
        assert not answer.startswith("HTTP 2"), f"{attempt}: {answer}"
        if attempt.endswith("https"):
            assert not answer.startswith("HTTP"), f"{attempt}: TLS let it in ({answer})"
    assert client.get_object(Bucket="dvc", Key="store/target")["Body"].read() == b"original"

    for name in ("weed_master_grpc", "weed_volume_grpc", "weed_filer_grpc", "weed_s3_grpc"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        with (
            pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
            socket.create_connection((base, ports[name]), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=base) as tls,
        ):
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # gRPC's HTTP/2 preface
            tls.recv(64)


def test_with_the_certificate_but_no_jwt_the_filer_still_refuses(stack):
    """The second lock: the filer's data path wants a token signed with the stack's key."""
    tls = stack["folder"] / "tls"
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    context.load_cert_chain(tls / "seaweedfs.pem", tls / "seaweedfs.key")
    port = seaweedfs_ports(stack)["weed_filer"]
    url = f"https://127.0.0.1:{port}/buckets/dvc/.stack-ready"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=10, context=context)
    assert error.value.code == 401


def test_the_postgres_password_file_is_0600_when_initdb_reads_it(monkeypatch):
    """The superuser's password file, with a umask of 022: 0600 (and PostgreSQL's account's)
    from its creation, seen at the moment initdb runs, and gone after."""
    require_team_stack()
    from digits.runtime.local_servers import free_ports
    from teamstack import postgres
    from teamstack import stack as stack_module

    seen = []
    real_run = subprocess.run

    def watching_run(command, *args, **kwargs):
        if "--pwfile" in command:
            path = Path(command[command.index("--pwfile") + 1])
            seen.append(stat.S_IMODE(path.stat().st_mode))
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(postgres.subprocess, "run", watching_run)
    folder = Path(tempfile.mkdtemp(prefix="team-stack-"))
    folder.chmod(0o755)
    root = folder / "stack"
    previous = os.umask(0o022)
    try:
        (port,) = free_ports(1)
        state = stack_module.load_state(root, {"postgres": port, "s3": None, "mlflow": None})
        postgres.start_postgres(root, state)
        assert not (root / "postgres.pw").exists()
    finally:
        os.umask(previous)
        stack_module.stop(root, ("postgres",))
        shutil.rmtree(folder, ignore_errors=True)
    assert seen == [0o600]
