import json

import numpy as np
import pandas as pd
import pytest
from helpers.paramsfile import TRACKING_OFF, params_copy
from helpers.paths import REPO_ROOT

from digits.data.arrays import Split, save_split
from digits.params import replace as params_replace
from stages import evaluate

NAMES = tuple(f"c{k}" for k in range(10))


@pytest.fixture
def split() -> Split:
    labels = np.array([0, 1, 2, 3, 3, 3])
    images = np.zeros((6, 28, 28, 1), np.float32)
    return Split(images, np.eye(10, dtype=np.float32)[labels], NAMES)


def logits_for(predicted, confidence=5.0):
    logits = np.zeros((len(predicted), 10), np.float32)
    logits[np.arange(len(predicted)), predicted] = confidence
    return logits


def test_metrics_against_hand_computed_values(split):
    logits = logits_for([0, 1, 2, 3, 3, 0])  # one 3 taken for a 0
    metrics, per_class = evaluate.test_metrics(split, logits)

    assert metrics["accuracy"] == pytest.approx(5 / 6)
    right = -np.log(np.exp(5) / (np.exp(5) + 9))
    wrong = -np.log(1 / (np.exp(5) + 9))
    assert metrics["loss"] == pytest.approx((5 * right + wrong) / 6, rel=1e-5)
    assert set(metrics) == {"accuracy", "loss", "macro_f1"}
    assert per_class["c0"] == {"precision": 0.5, "recall": 1.0, "f1-score": 0.666667}
    assert per_class["c3"]["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert per_class["c9"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0}


def test_confusion_table_uses_class_names(split):
    table = evaluate.confusion_table(split, logits_for([0, 1, 2, 3, 3, 0]))
    assert list(table.columns) == ["actual", "predicted"]
    assert table.iloc[5].tolist() == ["c3", "c0"]
    assert len(table) == 6


def test_main_on_a_saved_model(tmp_path):
    from helpers.idxdata import make_images

    from digits.model.networks import build_model
    from digits.params import load_params

    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    model = build_model(params_replace(params, model="softmax"))
    model.save(tmp_path / "model.keras")
    labels = np.arange(30) % 10
    images = make_images(labels, 0).astype(np.float32)[..., None] / 255
    save_split(tmp_path / "test.npz", images, np.eye(10, dtype=np.float32)[labels], NAMES)

    params_file = params_copy(tmp_path, TRACKING_OFF)
    evaluate.main([
        "--params", str(params_file), "--model", str(tmp_path / "model.keras"),
        "--run", str(tmp_path / "no-run.json"), "--test", str(tmp_path / "test.npz"),
        "--metrics", str(tmp_path / "eval.json"), "--plots", str(tmp_path / "plots"),
        "--per-class", str(tmp_path / "per_class.json"),
    ])  # fmt: skip

    metrics = json.loads((tmp_path / "eval.json").read_text())
    expected = np.mean(model.predict(images, verbose=0).argmax(1) == labels)
    assert metrics["accuracy"] == pytest.approx(expected)
    per_class = json.loads((tmp_path / "per_class.json").read_text())
    assert list(per_class) == list(NAMES)
    assert len(pd.read_csv(tmp_path / "plots" / "confusion.csv")) == 30
    for name in ("confusion.png", "errors.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
