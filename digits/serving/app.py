"""The server process of ``make serve``: MLflow's scoring server on a checked model.

uvicorn calls ``create_app`` (``--factory``). It fetches the ``.keras`` file of the model
named by ``DIGITS_SERVE_MODEL``, checks it against its run (``digits.serving.logged_model``),
loads it with ``digits.serving.pyfunc`` in Keras safe mode, for the dataset its run records
(tag ``dataset``), and hands MLflow's scoring server a ``PyFuncModel`` built here
(``as_pyfunc``): MLflow never reads the logged model's ``MLmodel``, pickle or code. The
``.keras`` file is deleted once loaded.

A request holds image files or a tensor. MLflow's server parses a body against one schema,
and a schema is either tensors or columns, so the served model declares none: it sends
images to ``LogitsModel.predict_images`` and anything else through MLflow's check of the
tensor signature (``digits.serving.model_format.model_signature``) to ``predict_tensor``, after
casting JSON numbers to float32 as MLflow's parser does against that signature.

Requests: a body over ``MAX_BODY_BYTES`` is answered 413 before it is parsed (MLflow's
server reads any body whole, and parsing JSON takes many times its size in memory), and a
batch over ``digits.serving.pyfunc.MAX_BATCH`` images is answered 400.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

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
        return load_keras(checked.keras_path, checked.sha256, checked.dataset)


class ServedModel:
    """The model the scoring server calls: image files to ``predict_images``, tensors through
    MLflow's check of the tensor signature to ``predict_tensor``."""

    def __init__(self, model) -> None:
        from mlflow.models import Model
        from mlflow.pyfunc import PyFuncModel

        from digits.serving.model_format import model_signature

        self.model = model
        self.tensors = PyFuncModel(model_meta=Model(signature=model_signature()), model_impl=model)

    def get_raw_model(self):
        """The Keras model (``PyFuncModel.get_raw_model``)."""
        return self.model.keras_model

    def predict(self, data, params: dict | None = None):
        """A DataFrame of classes for images, (n, 10) logits for a tensor.

        Raises:
            MlflowException: A bad image (named by index), a tensor of another shape or
                dtype, or too many images; the server answers 400.
        """
        from digits.serving.image_requests import image_files_of

        files = image_files_of(data)
        if files is not None:
            return self.model.predict_images(files)
        if isinstance(data, np.ndarray) and data.dtype.kind in "iuf":
            # JSON numbers: MLflow's parser casts them to the tensor signature's float32.
            data = data.astype(np.float32)
        return self.tensors.predict(data)


def as_pyfunc(model):
    """A ``LogitsModel`` as the ``PyFuncModel`` MLflow's scoring server takes: no schema of
    its own, so that images and tensors both reach ``ServedModel``."""
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    return PyFuncModel(model_meta=Model(), model_impl=ServedModel(model))


def create_app():
    """The ASGI app serving ``DIGITS_SERVE_MODEL`` (uvicorn ``--factory``).

    Raises:
        PipelineError: The model is refused (``checked_model``).
    """
    from mlflow.pyfunc import scoring_server

    from digits.serving.server import MODEL_VARIABLE, RUN_VARIABLE

    model = checked_model(os.environ[MODEL_VARIABLE], os.environ.get(RUN_VARIABLE) or None)
    return BodyLimit(scoring_server.init(as_pyfunc(model)), MAX_BODY_BYTES)
