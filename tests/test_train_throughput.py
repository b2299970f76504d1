"""The benchmark's functions on tiny data, so `make bench` cannot rot unnoticed (not timed)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from idxdata import tiny_split
from ruamel.yaml import YAML

from benchmarks import train_throughput as bench
from stages.models import build_model
from stages.params import load_params, parse_section, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_params():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return dataclasses.replace(params, conv1_filters=4, conv2_filters=8, fc_size=16, batch_size=8)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_tf1_graph_is_the_project_model(padding):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    params = dataclasses.replace(params, padding=padding)
    graph, nodes = bench.tf1_graph(params)
    with graph.as_default():
        variables = tf.compat.v1.trainable_variables()
    assert sum(int(np.prod(v.shape)) for v in variables) == build_model(params).count_params()
    assert nodes["logits"].shape.as_list() == [None, 10]


def test_tf1_contender_refuses_other_models():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    with pytest.raises(ValueError, match=r"train\.model: 'mlp'"):
        bench.tf1_graph(dataclasses.replace(params, model="mlp"))


def test_summarise_takes_medians_and_ratios_to_the_project():
    rounds = {"train_stage": [30.0, 10.0, 20.0], "keras_fit": [5.0, 10.0, 15.0]}
    summary = bench.summarise(rounds, "train_stage")
    assert summary["images_per_second"] == {"train_stage": 20.0, "keras_fit": 10.0}
    assert summary["train_stage_over"] == {"keras_fit": 2.0}
    assert summary["rounds"] is rounds


def test_every_contender_trains_and_infers_and_the_table_shows_it(tiny_params):
    figures = bench.throughput_figures(
        tiny_params, tiny_split(40, 1), tiny_split(20, 2), eval_batch_size=8, steps=2, repeats=1
    )
    train, inference = figures["train"], figures["inference"]
    assert set(train["images_per_second"]) == {
        "train_stage", "keras_fit", "tf1_feed_dict", "gradients_only",
    }  # fmt: skip
    assert set(inference["images_per_second"]) == {"evaluate_stage", "tf1_feed_dict"}
    for summary in (train, inference):
        assert all(rate > 0 for rate in summary["images_per_second"].values()), summary

    pipeline = {"download_preprocess_seconds": 4.0, "noop_repro_seconds": 0.5,
                "train_peak_memory_mib": 1000.0}  # fmt: skip
    results = {"data": "tiny", "batch_size": 8, "memory_run_steps": 4, "pipeline": pipeline,
               "load_average": {"before": [1, 1, 1], "after": [2, 2, 2]}, **figures,
               "arithmetic_limit": {"matmul_gflops": 300.0, "training_mflop_per_image": 19.55,
                                    "images_per_second": 15345}}  # fmt: skip
    table = bench.format_table(results)
    for name in ("train_stage", "keras_fit", "gradients_only", "evaluate_stage",
                 "no-op dvc repro", "1,000.00 MiB", "= 15,345 images/s"):  # fmt: skip
        assert name in table


def test_training_flops_of_the_tutorial_network_match_a_hand_count():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    conv1, conv2 = 2 * 28 * 28 * 5 * 5 * 16, 2 * 14 * 14 * 5 * 5 * 16 * 36
    fc, logits = 2 * 1764 * 128, 2 * 128 * 10
    # Forward, then twice that backward, less conv1's unneeded input gradient.
    expected = 3 * (conv1 + conv2 + fc + logits) - conv1
    assert bench.training_flops_per_image(build_model(params)) == expected == 19_551_232


def test_matmul_rate_is_positive_and_limit_divides_it(tiny_params):
    assert bench.matmul_gflops(size=64, repeats=1, products=2) > 0
    limit = bench.arithmetic_limit(tiny_params)
    flops = limit["training_mflop_per_image"] * 1e6
    assert limit["images_per_second"] == pytest.approx(limit["matmul_gflops"] * 1e9 / flops, 0.01)


@pytest.mark.slow
def test_pipeline_figures_on_a_tiny_mirror(tmp_path, tiny_mirror):
    params = {
        "data": {"dataset": "tiny", "validation_size": 20},
        "train": {"steps": 4, "eval_every": 2, "batch_size": 8},
    }
    catalog = {"tiny": tiny_mirror.entry}
    figures = bench.pipeline_figures(tmp_path / "project", tiny_mirror.root, params, catalog)
    assert set(figures) == {
        "download_preprocess_seconds", "noop_repro_seconds", "train_peak_memory_mib",
    }  # fmt: skip
    assert all(value > 0 for value in figures.values()), figures
    assert figures["train_peak_memory_mib"] > 100, "TensorFlow alone takes more"
    assert (tmp_path / "project" / "data" / "processed" / "train.npz").is_file()


def test_readme_fast_recipe_is_a_valid_one_cycle_run_of_the_train_stage():
    section = (REPO_ROOT / "README.md").read_text().split("## Performance", 1)[1]
    command = re.search(r"^dvc exp run (-S .*)$", section, re.MULTILINE).group(1)
    raw = read_yaml(REPO_ROOT / "params.yaml")["train"]
    for key, value in re.findall(r"-S train\.(\w+)=(\S+)", command):
        assert key in raw, key
        raw[key] = YAML(typ="safe", pure=True).load(value)  # as `dvc exp run -S` parses it
    params = parse_section("train", raw)
    assert params.lr_schedule == "one_cycle" and params.batch_size > 64
    assert len(re.findall(r"-S ", command)) == len(re.findall(r"-S train\.\w+=\S+", command))
