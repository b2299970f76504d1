import pytest
from helpers.paths import REPO_ROOT

from digits.params import load_params, read_yaml
from digits.tracking import run_values


def test_every_param_gets_its_dotted_name_and_yaml_spelling():
    params = load_params(REPO_ROOT / "params.yaml")
    flat = run_values.dotted_params(params, ("data", "train", "visualize", "tracking"))
    assert flat["train.fc_size"] == "128"
    assert flat["train.learning_rate"] == "0.0001"
    assert flat["visualize.images"] == "[0, 13]"
    assert flat["tracking.enabled"] == "true"
    assert flat["tracking.register_model"] == ""
    raw = read_yaml(REPO_ROOT / "params.yaml")
    sections = ("data", "train", "visualize", "tracking")
    assert set(flat) == {f"{section}.{key}" for section in sections for key in raw[section]}


def test_dotted_params_refuses_a_section_that_was_not_loaded():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",))
    with pytest.raises(ValueError, match="'evaluate' was not loaded"):
        run_values.dotted_params(params, ("evaluate",))


def test_metrics_are_the_top_level_numbers_of_a_metrics_file():
    metrics = {
        "accuracy": 0.5,
        "steps": 20,
        "per_class": {"T-shirt/top": {"f1-score": 0.25}},
        "dataset": "mnist",
        "flag": True,
    }
    assert run_values.top_level_metrics(metrics, "test/") == {
        "test/accuracy": 0.5,
        "test/steps": 20.0,
    }


def test_tags_name_the_commit_and_the_dvc_experiment():
    assert run_values.run_tags({"DVC_EXP_NAME": "quiet-oryx"}, "abc123") == {
        "mlflow.source.git.commit": "abc123",
        "dvc.experiment": "quiet-oryx",
    }
    assert run_values.run_tags({}, None) == {}


def test_an_experiment_commit_is_its_baseline(tmp_path):
    assert run_values.git_commit({"DVC_EXP_BASELINE_REV": "f00d"}, tmp_path) == "f00d"
    assert run_values.git_commit({}, tmp_path) is None  # not a git repository


def test_file_md5_is_the_dvc_cache_name(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello\n")
    assert run_values.file_md5(tmp_path / "a.bin") == "b1946ac92492d2347c6235b4d2611184"


def test_requirements_pin_the_installed_keras_and_tensorflow():
    pinned = run_values.pinned_requirements()
    names = [line.split("==")[0] for line in pinned]
    assert names[0] == "keras" and names[1].startswith("tensorflow")
    assert all("==" in line for line in pinned)
