"""Promotion to an alias: never a worse version without --force; the alias then loads."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from helpers.idxdata import tiny_split

from digits.errors import PipelineError
from digits.serving.predict import run as predict
from digits.serving.predict import softmax
from digits.tracking.promote import is_worse, promote
from digits.tracking.stage_run import SAME_MODEL_TAG

NAME = "tiny-digits"


@pytest.fixture
def registry(logged_model):
    """Versions 1-3 of NAME, all the logged model, their runs at accuracy .90, .95, .93."""
    model, uri = logged_model
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    source = mlflow.models.get_model_info(uri).artifact_path
    experiment = mlflow.get_experiment_by_name("t").experiment_id
    for accuracy in (0.90, 0.95, 0.93):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_metric("test/accuracy", accuracy)
            mlflow.set_tag("dataset", "mnist")
        client.create_model_version(NAME, source=source, run_id=run.info.run_id)
    return client, model


def test_loss_is_better_lower_and_accuracy_higher():
    assert is_worse(0.5, 0.4, "test/loss") and not is_worse(0.4, 0.5, "test/loss")
    assert is_worse(0.8, 0.9, "test/accuracy") and not is_worse(0.9, 0.9, "test/accuracy")


def test_promotion_refuses_a_worse_version_unless_forced(registry, capsys):
    client, _ = registry
    assert promote(client, NAME, "1", "champion", "test/accuracy", force=False) == "1"
    assert "@champion: nobody yet" in capsys.readouterr().out

    assert promote(client, NAME, None, "champion", "test/accuracy", force=False) == "3"
    out = capsys.readouterr().out
    assert f"{NAME} version 3: test/accuracy 0.9300" in out
    assert "@champion (version 1): test/accuracy 0.9000" in out

    client.set_registered_model_alias(NAME, "champion", "2")
    with pytest.raises(PipelineError, match=r"version 3 is worse than @champion version 2"):
        promote(client, NAME, "3", "champion", "test/accuracy", force=False)
    out = capsys.readouterr().out
    assert "version 3: test/accuracy 0.9300" in out and "(version 2): test/accuracy 0.9500" in out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"

    assert promote(client, NAME, "3", "champion", "test/accuracy", force=True) == "3"
    assert "promoted (forced)" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "3"


def test_missing_model_and_metric_are_named(registry):
    client, _ = registry
    with pytest.raises(PipelineError, match="nope"):
        promote(client, "nope", "1", "champion", "test/accuracy", force=False)
    with pytest.raises(PipelineError, match="has no test/f1"):
        promote(client, NAME, "2", "champion", "test/f1", force=False)


def test_the_champion_alias_works_in_predict(registry, tmp_path, capsys):
    client, model = registry
    promote(client, NAME, "2", "champion", "test/accuracy", force=False)
    capsys.readouterr()
    image = tiny_split(1, seed=4).x
    from PIL import Image

    Image.fromarray(np.round(image[0, ..., 0] * 255).astype(np.uint8)).save(tmp_path / "a.png")
    code = predict([str(tmp_path / "a.png"), "--model", f"models:/{NAME}@champion", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (row,) = [json.loads(line) for line in captured.out.splitlines()]
    # The class names come from the run's dataset tag (mnist), as no --dataset is given.
    expected = softmax(model.predict_on_batch(image))[0]
    assert row["class_name"] == str(expected.argmax())
    np.testing.assert_allclose(row["probabilities"], expected, atol=1e-5)


def test_a_version_trained_to_the_same_bytes_takes_the_figure_of_the_run_it_names(
    registry, capsys
):
    """A retrain that changed nothing keeps the earlier run in the run file, so evaluate
    logs there: the new version's run is tagged with that run, whose figure counts."""
    client, _ = registry
    source = client.get_model_version(NAME, "1").source
    experiment = mlflow.get_experiment_by_name("t").experiment_id
    evaluated = client.get_model_version(NAME, "2").run_id  # its run: accuracy .95
    with mlflow.start_run(experiment_id=experiment) as retrained:
        mlflow.set_tag(SAME_MODEL_TAG, evaluated)
    with mlflow.start_run(experiment_id=experiment) as twice:  # a chain of two retrains
        mlflow.set_tag(SAME_MODEL_TAG, retrained.info.run_id)
    client.create_model_version(NAME, source=source, run_id=retrained.info.run_id)
    client.create_model_version(NAME, source=source, run_id=twice.info.run_id)

    assert promote(client, NAME, "5", "champion", "test/accuracy", force=False) == "5"
    out = capsys.readouterr().out
    assert f"{NAME} version 5: test/accuracy 0.9500" in out
    assert f"from run {evaluated}" in out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "5"
    # Version 4 names the same model: not worse, so it may take the alias.
    assert promote(client, NAME, "4", "champion", "test/accuracy", force=False) == "4"


def test_a_loop_of_same_model_tags_is_no_figure(registry):
    client, _ = registry
    source = client.get_model_version(NAME, "1").source
    experiment = mlflow.get_experiment_by_name("t").experiment_id
    with mlflow.start_run(experiment_id=experiment) as run:
        pass
    client.set_tag(run.info.run_id, SAME_MODEL_TAG, run.info.run_id)
    client.create_model_version(NAME, source=source, run_id=run.info.run_id)
    with pytest.raises(PipelineError, match="version 4 has no test/accuracy"):
        promote(client, NAME, "4", "champion", "test/accuracy", force=False)
