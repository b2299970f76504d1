"""The server process of ``make serve``: MLflow's scoring server on a checked model.

uvicorn calls ``create_app`` (``--factory``). It fetches the ``.keras`` file of the model
named by ``DIGITS_SERVE_MODEL``, checks it against its run (``digits.serving.logged_model``),
loads it with ``digits.serving.pyfunc`` in Keras safe mode and hands MLflow's scoring server a
``PyFuncModel`` built here, with the signature every model of this project has: MLflow never
reads the logged model's ``MLmodel``, pickle or code. The ``.keras`` file is deleted once loaded.

Requests: a body over ``MAX_BODY_BYTES`` is answered 413 before it is parsed (MLflow's
server reads any body whole, and parsing JSON takes many times its size in memory), and a
batch over ``digits.serving.pyfunc.MAX_BATCH`` images is answered 400.
"""

from __future__ import annotations

import json
import os
import tempfile

MAX_BODY_BYTES = 10 * 1024 * 1024  # a request body; 512 images as JSON fit in it


class BodyLimit:
    """ASGI middleware: reads a request body up to ``max_bytes`` and answers 413 beyond it.

    A ``Content-Length`` over the cap is refused before any of the body is read; a body sent
    in chunks is refused as soon as it passes the cap. The app gets the body read here.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        """Answer 413 with an MLflow-style JSON error and close the connection."""
        answer = json.dumps({
            "error_code": "REQUEST_LIMIT_EXCEEDED",
            "message": f"request body over {self.max_bytes} bytes: send fewer images per "
            "request (Parquet takes a quarter of JSON's size)",
        }).encode()  # fmt: skip
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                        (b"content-length", str(len(answer)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": answer})


def checked_model(uri: str, run_id: str | None = None):
    """The ``digits.serving.pyfunc.LogitsModel`` of the logged model ``uri``, checked against its
    run (``digits.serving.logged_model.fetch_checked``); its downloaded file is deleted once
    loaded.

    Raises:
        PipelineError: The model is refused.
    """
    from digits.serving.logged_model import fetch_checked
    from digits.serving.pyfunc import load_keras

    with tempfile.TemporaryDirectory(prefix="digits-serve-") as folder:
        checked = fetch_checked(uri, folder, run_id)
        return load_keras(checked.keras_path, checked.sha256)


def as_pyfunc(model):
    """A ``LogitsModel`` as the ``PyFuncModel`` MLflow's scoring server takes, with the
    signature every model of this project has (``digits.serving.pyfunc.model_signature``)."""
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    from digits.serving.pyfunc import model_signature

    return PyFuncModel(model_meta=Model(signature=model_signature()), model_impl=model)


def create_app():
    """The ASGI app serving ``DIGITS_SERVE_MODEL`` (uvicorn ``--factory``).

    Raises:
        PipelineError: The model is refused (``checked_model``).
    """
    from mlflow.pyfunc import scoring_server

    from digits.serving.server import MODEL_VARIABLE, RUN_VARIABLE

    model = checked_model(os.environ[MODEL_VARIABLE], os.environ.get(RUN_VARIABLE) or None)
    return BodyLimit(scoring_server.init(as_pyfunc(model)), MAX_BODY_BYTES)
