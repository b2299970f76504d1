"""The team stack's tracking server: ``mlflow server --app-name basic-auth``, its runs in
PostgreSQL, its artifacts proxied to the object store, and the team member's login.

Signed-in users may read every experiment and change only those they own or are given
(``default_permission = READ``); the team experiment, made by the admin, is given to the
member login with EDIT, so their runs go there. Only the admin manages users.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from teamstack.files import write_private
from teamstack.postgres import postgres_uri
from teamstack.processes import HOST, spawn, wait_until
from teamstack.s3 import MLFLOW_BUCKET, s3_keys

TEAM_USER = "team"
ADMIN_USER = "admin"
# The experiment the pipeline logs to (params.yaml, tracking.experiment), shared with members.
TEAM_EXPERIMENT = "digits"


def tracking_uri(state: dict) -> str:
    return f"http://{HOST}:{state['ports']['mlflow']}"


def start_mlflow(folder: Path, state: dict) -> None:
    auth_config = folder / "basic_auth.ini"
    write_private(
        auth_config,
        "[mlflow]\n"
        # Signed-in users read every experiment and change only what they own or are given
        # (the team experiment: _share_team_experiment); anonymous users get nothing.
        "default_permission = READ\n"
        f"database_uri = {postgres_uri(state, 'mlflow_auth')}\n"
        f"admin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
    )
    access_key, secret_key = s3_keys(state, "mlflow")
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config.resolve()),
        "MLFLOW_AUTH_ADMIN_PASSWORD": state["admin_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": state["flask_secret"],
        "MLFLOW_BACKEND_STORE_URI": postgres_uri(state, "mlflow"),
        "MLFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{state['ports']['s3']}",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
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
    _share_team_experiment(state)


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
    admin = (ADMIN_USER, state["admin_password"])
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


def _share_team_experiment(state: dict) -> None:
    """The team experiment, made by the admin when missing, with EDIT for the member login."""
    admin = (ADMIN_USER, state["admin_password"])
    try:
        found = _request(
            state,
            f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={TEAM_EXPERIMENT}",
            None,
            *admin,
        )
        experiment_id = found["experiment"]["experiment_id"]
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        created = _request(
            state, "/api/2.0/mlflow/experiments/create", {"name": TEAM_EXPERIMENT}, *admin
        )
        experiment_id = created["experiment_id"]
    _request(
        state,
        "/api/3.0/mlflow/users/permissions/grant",
        {
            "username": TEAM_USER,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": "EDIT",
        },
        *admin,
    )
