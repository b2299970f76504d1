"""The logged model over HTTP: MLflow's scoring server on 127.0.0.1, on a checked model.

``make serve`` (``main``) and ``model_server`` (tests, benchmark) run uvicorn on
``digits.serving.app``, which fetches the model's ``.keras`` file, checks it against its run
(``digits.serving.logged_model``) and serves it with MLflow's scoring server (``/invocations``,
``/ping``): the same requests and answers as ``mlflow models serve``, but nothing of the
logged model but its checked ``.keras`` file is used, and request bodies and batches are
capped (``digits.serving.app.MAX_BODY_BYTES``, ``digits.serving.pyfunc.MAX_BATCH``).

Input: (n, 28, 28, 1) float32 in [0, 1]. Output: (n, 10) float32 logits. ``main`` checks
the model before starting the server, so a refused model is one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from digits.runtime.local_servers import free_port, running

# The server process reads the model to serve from these (digits.serving.app).
MODEL_VARIABLE = "DIGITS_SERVE_MODEL"
RUN_VARIABLE = "DIGITS_SERVE_RUN"  # the run the model must come from ("": any)
APP_FACTORY = "digits.serving.app:create_app"


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """uvicorn of this environment on ``digits.serving.app``, one worker."""
    uvicorn_bin = Path(sys.executable).with_name("uvicorn")
    return [
        str(uvicorn_bin), "--factory", APP_FACTORY, "--host", host, "--port", str(port),
        "--workers", "1", "--no-access-log",
    ]  # fmt: skip


def server_environment(
    model_uri: str, run_id: str | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``env`` (default: this process's) with the model to serve and this environment's
    scripts first on PATH."""
    environ = dict(os.environ if env is None else env)
    environ[MODEL_VARIABLE] = model_uri
    environ[RUN_VARIABLE] = run_id or ""
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return environ


@contextlib.contextmanager
def model_server(
    model_uri: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 240,
) -> Iterator[str]:
    """Serve ``model_uri`` on 127.0.0.1 until the block ends; yield its base URL.

    Waits for ``/ping``; the server (its own process group) is stopped by process id when
    the block ends, also on an exception.

    Raises:
        RuntimeError: The server exited (a refused model among the reasons) or did not answer
            ``/ping`` within ``timeout`` s; the message holds its log.
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    environ = server_environment(model_uri, None, env)
    with running(serve_command(port), f"{base}/ping", log_path, environ, timeout=timeout):
        yield base


def default_model(run_file: Path) -> tuple[str, str]:
    """The logged model of the workspace's last training run (``models/mlflow_run.json``)
    and that run's id; the URI is checked to name a model of that run.

    Raises:
        PipelineError: No run file, a run with tracking off, one from before models were
            recorded in it, or a ``model_uri`` that is not a model of its ``run_id``.
    """
    from digits.errors import PipelineError
    from digits.serving.logged_model import check_run_model_uri

    try:
        record = json.loads(run_file.read_text())
    except FileNotFoundError:
        raise PipelineError(
            f"{run_file} not found: train first (`dvc repro`) or pass MODEL="
        ) from None
    except ValueError as error:
        raise PipelineError(f"{run_file} is damaged ({error}); pass MODEL=") from None
    uri = record.get("model_uri") if isinstance(record, dict) else None
    if not uri:
        raise PipelineError(
            f"{run_file} names no logged model (tracking off, or trained before models were "
            "recorded): retrain with `dvc repro --force train`, or pass MODEL=models:/..."
        )
    run_id = record.get("run_id")
    return check_run_model_uri(uri, run_id, run_file), run_id


def default_model_uri(run_file: Path) -> str:
    """The URI of ``default_model``."""
    return default_model(run_file)[0]


def main(argv: list[str] | None = None) -> None:
    """``make serve``: check the workspace's model (or ``--model``), then serve it."""
    import argparse

    import mlflow

    from digits.serving.logged_model import fetch_checked
    from digits.tracking.mlflow_store import resolve_store

    parser = argparse.ArgumentParser(description="Serve a logged model over HTTP on 127.0.0.1.")
    parser.add_argument("--model", default="", help="MLflow model URI (default: the last run's)")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--run", type=Path, default=Path("models/mlflow_run.json"))
    args = parser.parse_args(argv)
    uri, run_id = (args.model, None) if args.model else default_model(args.run)
    tracking_uri = resolve_store(os.environ, Path.cwd()).tracking_uri
    mlflow.set_tracking_uri(tracking_uri)
    # Refused here, a model is one error line; the server checks it again when it loads it.
    with tempfile.TemporaryDirectory(prefix="digits-serve-") as folder:
        fetch_checked(uri, folder, run_id)
    environ = server_environment(uri, run_id)
    environ["MLFLOW_TRACKING_URI"] = tracking_uri
    command = serve_command(args.port)
    print(f"serving {uri} on http://127.0.0.1:{args.port} (POST /invocations)", flush=True)
    os.execve(command[0], command, environ)


if __name__ == "__main__":
    from digits.runtime.native_log import quiet_command
    from digits.runtime.stopping import run_stage

    quiet_command()  # the server inherits the filtered stderr across exec
    sys.exit(run_stage(main))
