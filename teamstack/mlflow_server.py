"""The team stack's tracking server: ``mlflow server --app-name basic-auth``, its runs in
PostgreSQL, its artifacts proxied to the object store, and the team member's login.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from teamstack.postgres import postgres_uri
from teamstack.processes import HOST, spawn, wait_until
from teamstack.s3 import MLFLOW_BUCKET

TEAM_USER = "team"


def tracking_uri(state: dict) -> str:
    return f"http://{HOST}:{state['ports']['mlflow']}"


def start_mlflow(folder: Path, state: dict) -> None:
    auth_config = folder / "basic_auth.ini"
    auth_config.touch(mode=0o600)
    auth_config.write_text(
        "[mlflow]\n"
        # Signed-in team members may read and write every experiment; anonymous users nothing.
        "default_permission = EDIT\n"
        f"database_uri = {postgres_uri(state, 'mlflow_auth')}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config.resolve()),
        "MLFLOW_AUTH_ADMIN_PASSWORD": state["admin_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": state["flask_secret"],
        "MLFLOW_BACKEND_STORE_URI": postgres_uri(state, "mlflow"),
        "MLFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{state['ports']['s3']}",
        "AWS_ACCESS_KEY_ID": state["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": state["s3_secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        # No background job runners (they serve GenAI features only), as `make ui`.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    spawn(
        folder,
        "mlflow",
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            HOST,
            "--port",
            str(state["ports"]["mlflow"]),
            # One worker: uvicorn runs requests in a thread pool, and each worker costs
            # half a minute of start-up on a busy 2-core machine.
            "--workers",
            "1",
            "--artifacts-destination",
            f"s3://{MLFLOW_BUCKET}/artifacts",
        ],
        env,
        cwd=str(folder.resolve()),
    )
    wait_until(lambda: _create_user(state), "the MLflow server", folder, "mlflow")


def _request(state: dict, path: str, body: dict | None, user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        tracking_uri(state) + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def _create_user(state: dict) -> bool:
    """The team member's login (``MLFLOW_TRACKING_USERNAME``), made by the admin once."""
    admin = ("admin", state["admin_password"])
    try:
        _request(state, f"/api/2.0/mlflow/users/get?username={TEAM_USER}", None, *admin)
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        _request(
            state,
            "/api/2.0/mlflow/users/create",
            {"username": TEAM_USER, "password": state["user_password"]},
            *admin,
        )
    return True
