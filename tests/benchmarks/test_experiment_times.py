"""The benchmark's user-facing timings: import-time parsing and the recipe the docs give."""

import re

from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from benchmarks import experiment_times
from benchmarks.harness import stage_command
from digits.params import parse_section, read_yaml

PROFILE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _frozen_importlib_external
import time:      2000 |    1500000 | tensorflow
import time:       500 |     700000 |   tensorflow.python
import time:        50 |     250000 | mlflow
"""


def test_import_seconds_sum_only_the_top_level_imports():
    assert experiment_times.import_seconds(PROFILE) == 1.75


def test_set_flags_are_dvc_exp_run_options():
    flags = experiment_times.set_flags({"train.steps": 10, "train.precision": "bfloat16"})
    assert flags == ["-S", "train.steps=10", "-S", "train.precision=bfloat16"]


def test_docs_recipe_is_the_one_make_bench_runs_and_a_valid_train_section():
    section = (REPO_ROOT / "docs" / "performance.md").read_text().split("## The fast recipe", 1)[1]
    command = re.search(r"^dvc exp run (-S .*)$", section, re.MULTILINE).group(1)
    values = dict(re.findall(r"-S (\S+)=(\S+)", command))
    yaml = YAML(typ="safe", pure=True)  # as `dvc exp run -S` parses a value
    assert {key: yaml.load(value) for key, value in values.items()} == experiment_times.FAST_RECIPE
    raw = read_yaml(REPO_ROOT / "params.yaml")["train"]
    for key, value in experiment_times.FAST_RECIPE.items():
        raw[key.removeprefix("train.")] = value
    assert parse_section("train", raw).precision == "bfloat16"


def test_benchmarks_run_each_stage_command_without_its_shell_exec():
    stages = read_yaml(REPO_ROOT / "dvc.yaml")["stages"]
    for name in stages:
        command = stage_command(stages, name)
        assert command[:3] == ["python", "-m", f"stages.{name}"]


def test_stages_run_reads_the_stages_dvc_ran():
    output = (
        "Stage 'train' didn't change, skipping\nRunning stage 'evaluate':\n"
        "> exec python -m stages.evaluate\nRunning stage 'visualize':\n"
    )
    assert experiment_times.stages_run(output) == ["evaluate", "visualize"]
    assert experiment_times.stages_run("Stage 'evaluate' didn't change, skipping\n") == []
