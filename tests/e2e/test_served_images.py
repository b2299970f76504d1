"""The same image files give the same answers through digits-predict, the logged model in
process and `make serve`'s server over HTTP (a real server on 127.0.0.1)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.idxdata import tiny_split
from helpers.served_images import as_base64, image_files, log_model

from digits.serving.model_format import IMAGE_COLUMN
from digits.serving.predict import run
from digits.serving.server import model_server


def post(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_files_give_the_same_answers_through_predict_pyfunc_and_the_server(
    tmp_path, store_template, monkeypatch, capsys
):
    model, uri = log_model(store_template, tmp_path, monkeypatch)
    files = image_files(tmp_path / "files")

    assert run([*map(str, files), "--model", uri, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    classes = [row["class_index"] for row in printed]
    probabilities = np.array([row["probabilities"] for row in printed])
    assert len(set(classes)) >= 3, f"the model tells few images apart: {classes}"
    assert [row["class_name"] for row in printed] == [str(k) for k in classes]

    # In process: MLflow's own loader and schema check, the files' bytes in a DataFrame.
    loaded = mlflow.pyfunc.load_model(uri)
    answer = loaded.predict(pd.DataFrame({IMAGE_COLUMN: [path.read_bytes() for path in files]}))
    assert list(answer["class_index"]) == classes
    assert list(answer["class_name"]) == [str(k) for k in classes]
    np.testing.assert_allclose(np.stack(answer["probabilities"]), probabilities, atol=1e-6)

    encoded = as_base64(files)
    with model_server(uri, tmp_path / "server.log") as base:
        for body in (
            {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[text] for text in encoded]}},
            {"dataframe_records": [{IMAGE_COLUMN: text} for text in encoded]},
            {"inputs": encoded},
            {"inputs": {IMAGE_COLUMN: encoded}},
        ):
            status, answer = post(base, body)
            assert status == 200, (next(iter(body)), answer)
            rows = answer["predictions"]
            assert [row["class_index"] for row in rows] == classes
            assert [row["class_name"] for row in rows] == [str(k) for k in classes]
            found = [row["probabilities"] for row in rows]
            np.testing.assert_allclose(found, probabilities, atol=1e-6)

        # A corrupt image in a batch of three: 400, naming it by its index and why.
        damaged = base64.b64encode(files[1].read_bytes()[:60]).decode()
        batch = [encoded[0], damaged, encoded[2]]
        split = {"columns": [IMAGE_COLUMN], "data": [[text] for text in batch]}
        status, answer = post(base, {"dataframe_split": split})
        assert status == 400, answer
        assert "image 1: damaged image" in answer["message"], answer["message"]
        status, answer = post(base, {"inputs": [encoded[0], encoded[2], "not base64!"]})
        assert status == 400 and "image 2: not base64" in answer["message"], answer

        # Tensors still get logits.
        status, answer = post(base, {"inputs": tiny_split(2, seed=3).x.tolist()})
        assert status == 200, answer
        np.testing.assert_allclose(
            answer["predictions"], model.predict_on_batch(tiny_split(2, seed=3).x), atol=1e-5
        )
