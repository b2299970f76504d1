from pathlib import Path

import pydantic
import pytest
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from digits.errors import ParamsError
from digits.params import SECTIONS, load_params, replace

PROJECT_PARAMS = REPO_ROOT / "params.yaml"


def project_params() -> dict:
    return YAML(typ="safe", pure=True).load(PROJECT_PARAMS.read_text())


def write(tmp_path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(raw, stream)
    return path


def test_project_params_load_into_frozen_sections():
    params = load_params(PROJECT_PARAMS)
    for name in SECTIONS:
        section = getattr(params, name)
        assert section is not None, name
        first_key = next(iter(type(section).model_fields))
        with pytest.raises(pydantic.ValidationError, match="frozen"):
            setattr(section, first_key, None)
    assert params.data.validation_size == 5000


def test_only_requested_sections_are_built(tmp_path):
    raw = project_params()
    raw["train"]["steps"] = "abc"  # invalid, but not asked for
    params = load_params(write(tmp_path, raw), sections=("data",))
    assert params.data is not None and params.train is None


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("data", "validation_size", 0, r"data.validation_size: 0 is out of range; allowed: 1 <="),
        (
            "data",
            "validation_size",
            "5000",
            r"data.validation_size: expected an integer, got '5000'",
        ),
        ("data", "validation_size", 5000.0, r"data.validation_size: expected an integer"),
        ("data", "seed", True, r"data.seed: expected an integer, got True"),
        ("data", "dataset", "", r"data.dataset: empty"),
        (
            "train",
            "learning_rate",
            float("nan"),
            r"train.learning_rate: nan is not a finite number; "
            r"allowed: 0.0 < train.learning_rate <= 10.0",
        ),
        ("train", "learning_rate", float("inf"), r"train.learning_rate: inf is not a finite"),
        ("train", "dropout", float("nan"), r"train.dropout: nan is not a finite number"),
        ("train", "momentum", float("-inf"), r"train.momentum: -inf is not a finite number"),
        (
            "train",
            "learning_rate",
            -1,
            r"train.learning_rate: -1.0 is out of range; "
            r"allowed: 0.0 < train.learning_rate <= 10.0",
        ),
        ("train", "steps", 12.5, r"train.steps: expected an integer, got 12.5 \(float\)"),
        ("train", "fc_size", [128], r"train.fc_size: expected an integer, got \[128\] \(list\)"),
        ("train", "dropout", [0.5], r"train.dropout: expected a number, got \[0.5\] \(list\)"),
        ("train", "model", "resnet", r"train.model: 'resnet' is not allowed; choose one of"),
        ("train", "model", True, r"train.model: True is not allowed; choose one of"),
        ("tracking", "enabled", "yes", r"tracking.enabled: expected true or false, got 'yes'"),
        ("tracking", "experiment", "  ", r"tracking.experiment: empty"),
        ("visualize", "images", [], r"visualize.images: the list is empty"),
        ("visualize", "images", 3, r"visualize.images: expected a list of integers, got 3"),
        (
            "visualize",
            "images",
            [0, -1],
            r"visualize.images\[1\]: -1 is out of range; allowed: 0 <= visualize.images\[1\]",
        ),
        ("visualize", "images", [0, 1.0], r"visualize.images\[1\]: expected an integer"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(tmp_path, section, key, value, message):
    raw = project_params()
    raw[section][key] = value
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, raw), sections=(section,))


def test_unknown_key_lists_allowed_keys(tmp_path):
    raw = project_params()
    raw["data"]["validation_sise"] = 10
    with pytest.raises(ParamsError, match=r"unknown key data.validation_sise; allowed keys"):
        load_params(write(tmp_path, raw), sections=("data",))


def test_missing_key(tmp_path):
    raw = project_params()
    del raw["data"]["seed"]
    with pytest.raises(ParamsError, match=r"missing key data.seed"):
        load_params(write(tmp_path, raw), sections=("data",))


def test_unknown_section(tmp_path):
    raw = project_params()
    raw["trian"] = {"steps": 1}
    with pytest.raises(ParamsError, match=r"unknown section 'trian'"):
        load_params(write(tmp_path, raw), sections=("data",))


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="is not valid YAML"):
        load_params(bad)


def test_yaml_1_2_floats_as_dvc_writes_them(tmp_path):
    path = tmp_path / "params.yaml"
    text = PROJECT_PARAMS.read_text()
    path.write_text(text)
    lines = [
        "  learning_rate: 1e-3" if line.strip().startswith("learning_rate:") else line
        for line in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    assert load_params(path, sections=("train",)).train.learning_rate == pytest.approx(1e-3)


def test_an_int_where_a_float_is_expected_is_a_float(tmp_path):
    raw = project_params()
    raw["train"]["learning_rate"] = 1
    train = load_params(write(tmp_path, raw), sections=("train",)).train
    assert train.learning_rate == 1.0
    assert isinstance(train.learning_rate, float)


def test_replace_checks_the_new_values_as_params_yaml_does():
    train = load_params(PROJECT_PARAMS, sections=("train",)).train
    assert replace(train, steps=6).steps == 6
    with pytest.raises(pydantic.ValidationError, match="steps"):
        replace(train, steps=0)
    with pytest.raises(pydantic.ValidationError, match="fc_sise"):
        replace(train, fc_sise=1)


def test_eval_every_may_exceed_steps(tmp_path):
    # `dvc exp run -S train.steps=300` with the default eval_every (500): a short run.
    raw = project_params()
    raw["train"]["steps"] = 300
    params = load_params(write(tmp_path, raw), sections=("train",)).train
    assert (params.steps, params.eval_every) == (300, raw["train"]["eval_every"])
    assert params.eval_every > params.steps
