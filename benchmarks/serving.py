"""Benchmark: the model behind ``make serve``'s server, and where a request's time goes.

Starts the server as ``make serve`` does (local environment, 127.0.0.1), then over one
kept-alive HTTP connection times one-image requests (JSON, median and p95 latency) and
256-image requests (Parquet, images/s; JSON once, for comparison). In this process it then
splits a request's time into MLflow's own steps on the same logged model: parsing the body,
schema check plus predict (``PyFuncModel.predict``), the bare compiled forward pass, and
writing the JSON answer.

    python -m benchmarks.serving                     # an untrained default CNN, temporary store
    python -m benchmarks.serving --model models:/digits-cnn@champion

Without ``--model`` it logs an untrained model of the default architecture into a
temporary SQLite store: the timings do not depend on the weights. ``make bench`` runs it too.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
BATCH = 256


def json_body(images: np.ndarray) -> bytes:
    """A tensor request, ``{"inputs": [...]}``, for (n, 28, 28, 1) float32 images."""
    return json.dumps({"inputs": images.tolist()}).encode()


def parquet_body(images: np.ndarray) -> bytes:
    """A one-column DataFrame of flattened float32 images, as Parquet.

    MLflow reshapes such a column to the signature's (-1, 28, 28, 1) and checks its dtype;
    the body is binary, 4 bytes a pixel, and is parsed without Python objects per pixel.
    """
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"image": list(images.reshape(len(images), -1))}).to_parquet(buffer)
    return buffer.getvalue()


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> bytes:
    """POST ``body`` to /invocations and return the answer; raise on a non-200 status."""
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"/invocations answered {response.status}: {answer[:300]!r}")
    return answer


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls, after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def http_figures(base: str, images: np.ndarray, singles: int, batches: int) -> dict:
    """One-image latency (JSON) and 256-image throughput (Parquet, and JSON) over HTTP."""
    address = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        one = json_body(images[:1])
        latency = timed(lambda: post(connection, one, JSON), singles)
        batch = parquet_body(images[:BATCH])
        parquet_times = timed(lambda: post(connection, batch, PARQUET), batches)
        batch_json = json_body(images[:BATCH])
        json_times = timed(lambda: post(connection, batch_json, JSON), 3)
    finally:
        connection.close()
    return {
        "one_image_ms_median": 1000 * statistics.median(latency),
        "one_image_ms_p95": 1000 * float(np.percentile(latency, 95)),
        "one_image_requests": singles,
        "batch_parquet_images_per_second": BATCH / statistics.median(parquet_times),
        "batch_parquet_bytes": len(batch),
        "batch_json_images_per_second": BATCH / statistics.median(json_times),
        "batch_json_bytes": len(batch_json),
        "batch_requests": batches,
    }


def breakdown(model_uri: str, images: np.ndarray, repeats: int) -> dict:
    """Median ms of MLflow's steps of one request, in this process, on the served model."""
    from mlflow.pyfunc import scoring_server

    from digits.serving.app import as_pyfunc, checked_model

    forward = checked_model(model_uri)  # as the server loads it
    model = as_pyfunc(forward)
    schema = model.metadata.get_input_schema()
    figures = {}
    for name, body, content_type, count in (
        ("one_image_json", json_body(images[:1]), JSON, 1),
        ("batch_parquet", parquet_body(images[:BATCH]), PARQUET, BATCH),
        ("batch_json", json_body(images[:BATCH]), JSON, BATCH),
    ):
        parse = _parser(body, content_type, model, schema)
        parsed = parse()
        logits = model.predict(parsed)
        steps = {
            "parse": parse,
            "schema_and_predict": lambda parsed=parsed: model.predict(parsed),
            "forward_pass": lambda count=count: forward.predict(images[:count]),
            "answer_json": lambda logits=logits: scoring_server.predictions_to_json(
                logits, io.StringIO()
            ),
            "whole_request": lambda body=body, content_type=content_type: (
                scoring_server.invocations(body, content_type, model, schema)
            ),
        }
        reps = repeats if count == 1 or content_type == PARQUET else 2
        figures[name] = {
            step: 1000 * statistics.median(timed(call, reps)) for step, call in steps.items()
        }
    return figures


def _parser(body: bytes, content_type: str, model, schema) -> Callable[[], object]:
    """MLflow's parsing of a request body, as the server does it, without predicting."""
    from mlflow.pyfunc import scoring_server

    if content_type == JSON:
        return lambda: scoring_server._parse_json_data(body, model.metadata, schema).data
    return lambda: scoring_server.parse_parquet_input(io.BytesIO(body))


def untrained_model(folder: Path) -> str:
    """Log an untrained default-architecture model into a SQLite store in ``folder``."""
    import mlflow

    from digits.model.networks import build_model
    from digits.params import load_params
    from digits.tracking.logger import Tracker

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    experiment = mlflow.create_experiment("bench", artifact_location=(folder / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        example = np.zeros((1, 28, 28, 1), np.float32)
        tracker = Tracker(run.info.run_id)
        return tracker.log_model(build_model(params), example, name=f"untrained-{params.model}")


def serving_figures(model_uri: str | None, singles: int = 200, batches: int = 20) -> dict:
    """Serve ``model_uri`` (None: an untrained model) and return every figure."""
    from digits.serving.server import model_server

    images = np.random.default_rng(0).random((BATCH, 28, 28, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
        work = Path(work)
        uri = model_uri or untrained_model(work)
        load_before = os.getloadavg()
        with model_server(uri, work / "server.log") as base:
            figures = http_figures(base, images, singles, batches)
        figures["breakdown_ms"] = breakdown(uri, images, repeats=20)
    figures |= {"model": model_uri or "untrained default model", "load_before": load_before}
    figures["load_after"] = os.getloadavg()
    return figures


def print_table(figures: dict) -> None:
    """The figures as a few aligned lines."""
    print(
        f"one image (JSON): median {figures['one_image_ms_median']:.1f} ms, "
        f"p95 {figures['one_image_ms_p95']:.1f} ms over {figures['one_image_requests']} requests"
    )
    print(
        f"256 images: {figures['batch_parquet_images_per_second']:,.0f} images/s as Parquet "
        f"({figures['batch_parquet_bytes']:,} bytes), "
        f"{figures['batch_json_images_per_second']:,.0f} images/s as JSON "
        f"({figures['batch_json_bytes']:,} bytes)"
    )
    print("in-process breakdown (ms, median):")
    for request, steps in figures["breakdown_ms"].items():
        print(f"  {request:<15} " + "  ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    print(f"load average before / after: {figures['load_before']} / {figures['load_after']}")


def main(argv: list[str] | None = None) -> None:
    """Run the serving benchmark, print it and write ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="MLflow model URI (default: an untrained model)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "metrics" / "bench_serving.json")
    parser.add_argument("--singles", type=int, default=200, help="one-image requests")
    parser.add_argument("--batches", type=int, default=20, help="256-image requests")
    args = parser.parse_args(argv)
    from digits.runtime.atomic import write_json

    figures = serving_figures(args.model, args.singles, args.batches)
    print_table(figures)
    write_json(args.out, figures)


if __name__ == "__main__":
    sys.exit(main())
