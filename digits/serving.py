"""The logged MLflow model: a pyfunc around one compiled inference function.

``mlflow models serve`` calls the pyfunc's ``predict`` once per request. With MLflow's Keras
flavour that is ``keras.Model.predict``, which builds a ``tf.data`` pipeline on every call,
many times the cost of the compiled forward pass for one image (docs/performance.md). This
model traces the forward pass once when it is loaded (``tf.function`` with a fixed input
signature) and runs only that per request. The ``.keras`` file travels inside the logged model
as its artifact ``keras_model``.

Input (the logged signature checks it before ``predict`` runs): (n, 28, 28, 1) float32 in
[0, 1]. Output: (n, 10) float32 logits. ``model_server`` runs ``mlflow models serve`` on
such a model (tests, benchmark). This module imports MLflow at load: only
``digits.tracker.Tracker.log_model``, the model server, tests and the benchmark import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow.pyfunc
import numpy as np

from digits.servers import free_port, running

KERAS_ARTIFACT = "keras_model"  # the name of the .keras file among the model's artifacts


class LogitsModel(mlflow.pyfunc.PythonModel):
    """(n, 28, 28, 1) float32 images -> (n, 10) logits, one compiled call per request."""

    def load_context(self, context) -> None:
        """Load the Keras model (safe mode) and trace its forward pass once."""
        import tensorflow as tf

        from digits.models import load_model  # registers the model's own layers

        model = load_model(context.artifacts[KERAS_ARTIFACT])
        self.keras_model = model
        self._forward = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)],
        )
        self._forward.get_concrete_function()  # trace now: the first request is not slower

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """Logits of ``model_input``, (n, 28, 28, 1) float32.

        The ``np.ndarray`` hint is one MLflow accepts without inferring a schema from it (the
        logged signature says the shape); without a hint MLflow warns on every import.
        MLflow checks the shape; it checks the dtype of JSON but not of a Parquet column of
        arrays (``mlflow.models.utils._reshape_and_cast_pandas_column_values``), so it is
        checked here too: a float64 image would otherwise be cast silently.

        Raises:
            MlflowException: Not float32 (the server answers 400 with the message).
        """
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        dtype = getattr(model_input, "dtype", None)
        if dtype != np.float32:
            raise MlflowException(
                f"dtype of input {dtype} does not match expected dtype float32: send images "
                "as float32 in [0, 1], shape (n, 28, 28, 1)",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return self._forward(model_input).numpy()


def serve_command(model_uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """``mlflow models serve`` in this environment (no virtualenv or conda build)."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow_bin), "models", "serve", "--model-uri", model_uri,
        "--env-manager", "local", "--host", host, "--port", str(port),
    ]  # fmt: skip


@contextlib.contextmanager
def model_server(
    model_uri: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 240,
) -> Iterator[str]:
    """Run ``mlflow models serve`` on 127.0.0.1 until the block ends; yield its base URL.

    Waits for ``/ping``; the server (its own process group: uvicorn and its worker) is
    stopped by process id when the block ends, also on an exception.

    Raises:
        RuntimeError: The server exited or did not answer ``/ping`` within ``timeout`` s;
            the message holds its log.
    """
    port = port or free_port()
    environ = dict(os.environ if env is None else env)
    # uvicorn is started by name: this environment's scripts come first on PATH.
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    base = f"http://127.0.0.1:{port}"
    with running(
        serve_command(model_uri, port), f"{base}/ping", log_path, environ, timeout=timeout
    ):
        yield base


def default_model_uri(run_file: Path) -> str:
    """The logged model of the workspace's last training run (``models/mlflow_run.json``).

    Raises:
        PipelineError: No run file, a run with tracking off, or one from before models were
            recorded in it.
    """
    from digits.errors import PipelineError

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
    return uri


def main(argv: list[str] | None = None) -> None:
    """``make serve``: run ``mlflow models serve`` on the workspace's model (or ``--model``)."""
    import argparse

    from digits.mlflow_store import resolve_store

    parser = argparse.ArgumentParser(description="Serve a logged model over HTTP on 127.0.0.1.")
    parser.add_argument("--model", default="", help="MLflow model URI (default: the last run's)")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--run", type=Path, default=Path("models/mlflow_run.json"))
    args = parser.parse_args(argv)
    uri = args.model or default_model_uri(args.run)
    environ = dict(os.environ)
    environ["MLFLOW_TRACKING_URI"] = resolve_store(os.environ, Path.cwd()).tracking_uri
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    command = serve_command(uri, args.port)
    print(f"serving {uri} on http://127.0.0.1:{args.port} (POST /invocations)", flush=True)
    os.execve(command[0], command, environ)


if __name__ == "__main__":
    from digits.errors import run_stage

    sys.exit(run_stage(main))
