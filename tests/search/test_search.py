"""search.yaml checks, the ranking of search.best and the parts of search.tune that need no DVC."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from ruamel.yaml import YAML

from digits.errors import ParamsError, PipelineError
from search import best, experiments, space, tune
from search.experiments import FAILED, RUNNING, SUCCESS, Experiment, parse_show


def write_space(folder: Path, **changes) -> Path:
    """The shipped search.yaml with top-level keys or ``params`` entries replaced."""
    yaml = YAML(typ="safe", pure=True)
    raw = yaml.load((REPO_ROOT / "search.yaml").read_text())
    for key, value in changes.items():
        if key in raw:
            raw[key] = value
        else:
            raw["params"][key.replace("__", ".")] = value
    path = folder / "search.yaml"
    with path.open("w") as stream:
        yaml.dump(raw, stream)
    shutil.copy(REPO_ROOT / "params.yaml", folder / "params.yaml")
    return path


def test_the_shipped_search_space_loads(tmp_path):
    loaded = space.load_space(REPO_ROOT / "search.yaml", REPO_ROOT / "params.yaml")
    assert loaded.metric == "train.val_accuracy"
    assert loaded.direction == "maximize"
    rate = loaded.params["train.learning_rate"]
    assert isinstance(rate, space.FloatRange) and rate.log
    assert isinstance(loaded.params["train.fc_size"], space.IntRange)
    assert loaded.params["train.batch_size"].choices == [32, 64, 128]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train__fc_size": {"type": "int", "low": 32, "high": 16}}, "params.train.fc_size: low"),
        ({"train__fc_size": {"type": "int", "low": 32.5, "high": 64}}, "params.train.fc_size.low"),
        ({"train__fc_size": {"type": "int", "low": 1, "hi": 64}}, "params.train.fc_size.hi"),
        ({"train__dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "train.dropout: 1.5"),
        ({"train__learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"train__batch_size": {"type": "choice", "choices": [32, 32]}}, "repeat"),
        ({"train__fc_sise": {"type": "int", "low": 1, "high": 2}}, "params.train.fc_sise: not a"),
        ({"train__padding": {"type": "choice", "choices": ["same", "full"]}}, "train.padding"),
        ({"train__seed": {"type": "uniform", "low": 0, "high": 1}}, "params.train.seed"),
        ({"metric": "eval.accuracy"}, "metric: 'eval.accuracy' is a test-set metric"),
        ({"direction": "up"}, "direction:"),
    ],
)
def test_a_bad_search_space_names_the_key(tmp_path, changes, message):
    path = write_space(tmp_path, **changes)
    with pytest.raises(ParamsError) as raised:
        space.load_space(path, tmp_path / "params.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_suggest_draws_inside_the_declared_ranges():
    import optuna

    loaded = space.load_space(REPO_ROOT / "search.yaml", REPO_ROOT / "params.yaml")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(20):
        values = space.suggest(loaded, study.ask())
        assert 1e-4 <= values["train.learning_rate"] <= 3e-2
        assert 32 <= values["train.fc_size"] <= 512 and isinstance(values["train.fc_size"], int)
        assert values["train.batch_size"] in (32, 64, 128)
        assert 0.0 <= values["train.dropout"] <= 0.5


def test_overrides_are_yaml_that_dvc_parses():
    assert tune.override("train.fc_size", 128) == "train.fc_size=128"
    assert tune.override("tracking.enabled", False) == "tracking.enabled=false"
    assert tune.override("train.learning_rate", 0.000123) == "train.learning_rate=0.000123"


def test_storage_defaults_to_sqlite_in_the_workspace_and_follows_the_environment(tmp_path):
    assert tune.storage_url(None, {}, tmp_path) == f"sqlite:///{tmp_path}/optuna.db"
    shared = "postgresql+psycopg://user@127.0.0.1:5432/optuna"
    assert tune.storage_url(None, {"SEARCH_STORAGE": shared}, tmp_path) == shared
    assert tune.storage_url("sqlite:///x.db", {"SEARCH_STORAGE": shared}, tmp_path) == (
        "sqlite:///x.db"
    )


def experiment(name, state=SUCCESS, **values) -> Experiment:
    params = {"train.fc_size": values.pop("fc_size", 128), "train.seed": 0}
    return Experiment(name, f"{name}-rev", state, params, values)


def test_ranking_uses_validation_and_skips_unfinished_experiments():
    experiments = [
        experiment("a", fc_size=8, **{"train.val_accuracy": 0.7, "eval.accuracy": 0.99}),
        experiment("b", fc_size=16, **{"train.val_accuracy": 0.9, "eval.accuracy": 0.6}),
        experiment("c", fc_size=32, **{"train.val_accuracy": 0.8, "eval.accuracy": 0.7}),
        experiment("d", RUNNING, **{"train.val_accuracy": 0.95}),
        experiment("e", FAILED, **{"train.val_accuracy": 0.99}),
    ]
    assert [row.name for row in best.rank(experiments, "train.val_accuracy")] == ["b", "c", "a"]
    losses = [
        experiment("a", **{"train.val_loss": 0.3}),
        experiment("b", **{"train.val_loss": 0.1}),
    ]
    assert [row.name for row in best.rank(losses, "train.val_loss")] == ["b", "a"]
    printed = best.table(best.rank(experiments, "train.val_accuracy"), "train.val_accuracy")
    header, first, *_ = printed.splitlines()
    columns = ["#", "experiment", "train.fc_size", "train.val_accuracy", "eval.accuracy", "(info)"]
    assert header.split() == columns
    assert first.split() == ["1", "b", "16", "0.9000", "0.6000"]


def test_ranking_refuses_test_metrics_and_lists_the_known_ones():
    counts = {"train.steps": 100, "train.best_step": 40, "train.stopped_step": 100}
    metrics = {"train.val_accuracy": 0.7, "eval.accuracy": 0.9, **counts}
    experiments = [experiment("a", **metrics)]
    with pytest.raises(PipelineError, match="measured on the test set"):
        best.rank(experiments, "eval.accuracy")
    with pytest.raises(PipelineError) as raised:
        best.rank(experiments, "train.val_acc")
    assert str(raised.value).endswith("metrics that exist: train.val_accuracy")


def test_exp_show_json_maps_names_states_params_and_metrics():
    shown = [
        {"rev": "workspace", "name": None, "data": {}, "experiments": None},
        {
            "rev": "abc1234def",
            "name": "main",
            "data": {"params": {}, "metrics": {}},
            "experiments": [
                {
                    "name": "fc-2",
                    "executor": {"state": "running"},
                    "revs": [{"rev": "r2", "name": "fc-2", "data": {}}],
                },
                {
                    "name": "fc-1",
                    "executor": None,
                    "revs": [
                        {
                            "rev": "r1",
                            "name": "fc-1",
                            "data": {
                                "params": {"params.yaml": {"data": {"train": {"fc_size": 8}}}},
                                "metrics": {
                                    "metrics/train.json": {"data": {"val_accuracy": 0.5}},
                                    "metrics/eval.json": {"data": {"per_class": {"a": {"f1": 1}}}},
                                },
                            },
                        }
                    ],
                },
            ],
        },
    ]
    baseline, experiments = parse_show(shown)
    assert baseline.name == "main"
    assert [(row.name, row.state) for row in experiments] == [("fc-2", RUNNING), ("fc-1", SUCCESS)]
    assert experiments[1].params == {"train.fc_size": 8}
    assert experiments[1].metrics == {"train.val_accuracy": 0.5, "eval.per_class.a.f1": 1}


def test_a_hung_exp_show_is_killed_asked_again_then_named(tmp_path, monkeypatch):
    """`dvc exp show` can hang for good while a queued experiment's copy is deleted (pygit2);
    the search must not wait with it."""
    calls = tmp_path / "calls"
    hanging = tmp_path / "python"
    hanging.write_text(f"#!/bin/sh\necho call >> '{calls}'\nexec sleep 60\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(experiments.sys, "executable", str(hanging))
    monkeypatch.setattr(experiments.time, "sleep", lambda seconds: None)
    with pytest.raises(PipelineError, match=r"`dvc exp show --json` did not finish within 1 s"):
        experiments.show(tmp_path, attempts=2, timeout=1.0)
    assert calls.read_text().count("call") == 2


def test_the_baseline_is_ranked_and_no_experiment_below_it_is_recommended():
    baseline = experiment("main", fc_size=128, **{"train.val_accuracy": 0.7456})
    worse = [
        experiment("a", fc_size=8, **{"train.val_accuracy": 0.7330, "eval.accuracy": 0.7}),
        experiment("b", fc_size=16, **{"train.val_accuracy": 0.7001, "eval.accuracy": 0.7}),
    ]
    ranked = best.rank(worse, "train.val_accuracy")
    winner, verdict = best.recommend(ranked, baseline, "train.val_accuracy")
    assert winner is None
    assert verdict == (
        "no experiment beats the baseline main (train.val_accuracy 0.7456): "
        "keep the commit's model"
    )
    rows = [
        line.split() for line in best.table(ranked, "train.val_accuracy", baseline).splitlines()
    ]
    assert [row[:3] for row in rows[1:]] == [
        ["base", "main", "128"],
        ["1", "a", "8"],
        ["2", "b", "16"],
    ]
    assert rows[1][3] == "0.7456"

    better = experiment("c", fc_size=32, **{"train.val_accuracy": 0.75})
    ranked = best.rank([*worse, better], "train.val_accuracy")
    winner, verdict = best.recommend(ranked, baseline, "train.val_accuracy")
    assert winner is better and verdict.startswith(
        "best: c, better than the baseline main (0.7456)"
    )
    rows = [
        line.split() for line in best.table(ranked, "train.val_accuracy", baseline).splitlines()
    ]
    assert [row[1] for row in rows[1:]] == ["c", "main", "a", "b"]
    # A tie does not beat it; a loss is better lower.
    tie = experiment("t", **{"train.val_accuracy": 0.7456})
    assert best.recommend([tie], baseline, "train.val_accuracy")[0] is None
    lossy = experiment("main", **{"train.val_loss": 0.5})
    assert best.recommend([experiment("l", **{"train.val_loss": 0.4})], lossy, "train.val_loss")[0]


def test_a_baseline_without_the_metric_says_its_results_are_not_committed():
    baseline = experiment("main")
    ranked = best.rank([experiment("a", **{"train.val_accuracy": 0.7})], "train.val_accuracy")
    winner, verdict = best.recommend(ranked, baseline, "train.val_accuracy")
    assert winner.name == "a"
    assert "The baseline main has no train.val_accuracy" in verdict and "git commit" in verdict
    rows = best.table(ranked, "train.val_accuracy", baseline).splitlines()
    assert rows[-1].split()[:2] == ["base", "main"]  # no figure: listed last
