"""Every contender of the benchmark runs on tiny data and the table shows it (not timed)."""

import pytest
from helpers.idxdata import tiny_split
from helpers.paths import REPO_ROOT

from benchmarks import contenders, table
from digits.params import load_params
from digits.params import replace as params_replace


@pytest.fixture
def tiny_params():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return params_replace(params, conv1_filters=4, conv2_filters=8, fc_size=16, batch_size=8)


def test_every_contender_trains_and_infers_and_the_table_shows_it(tiny_params):
    figures = contenders.throughput_figures(
        tiny_params, tiny_split(40, 1), tiny_split(20, 2), eval_batch_size=8, steps=2, repeats=1
    )
    train, inference = figures["train"], figures["inference"]
    assert set(train["images_per_second"]) == {
        "train_stage", "train_stage_bf16", "keras_fit", "keras_fit_bf16", "tf1_feed_dict",
        "gradients_only", "gradients_only_bf16", "relu_first",
    }  # fmt: skip
    assert set(inference["images_per_second"]) == {
        "evaluate_stage", "evaluate_stage_bf16", "tf1_feed_dict", "relu_first",
    }  # fmt: skip
    for summary in (train, inference):
        assert all(rate > 0 for rate in summary["images_per_second"].values()), summary

    pipeline = {"download_preprocess_seconds": 4.0, "noop_repro_seconds": 0.5,
                "train_peak_memory_mib": 1000.0}  # fmt: skip
    results = {"data": "tiny", "batch_size": 8, "memory_run_steps": 4, "pipeline": pipeline,
               "load_average": {"before": [1, 1, 1], "after": [2, 2, 2]}, **figures,
               "arithmetic_limit": {
                   "float32": {"matmul_gflops": 300.0, "training_mflop_per_image": 19.55,
                               "images_per_second": 15345},
                   "bfloat16": {"matmul_gflops": 900.0, "training_mflop_per_image": 19.55,
                                "images_per_second": 46036}},
               "cpu": {"cpu": "Test CPU", "bfloat16_flags": ["avx512_bf16"]},
               "without_bfloat16_units": {
                   "isa": "AVX512_CORE", "train_stage_over": {"train_stage_bf16": 3.0},
                   "images_per_second": {"train_stage": 6000, "train_stage_bf16": 2000}},
               "startup": {"evaluate": {"import_seconds": 6.0, "wall_seconds": 12.0,
                                        "startup_share": 0.5}},
               "evaluate_only": {"wall_seconds": 20.0, "evaluate_import_seconds": 6.0,
                                 "startup_share": 0.3},
               "queue": {"jobs_1": {"digits_threads": "unset", "wall_seconds": 100.0,
                                    "experiments_per_hour": 144},
                         "jobs_2": {"digits_threads": "1", "wall_seconds": 80.0,
                                    "experiments_per_hour": 180}, "jobs_2_speedup": 1.25,
                         "steps": 200},
               "queue_long": {"jobs_1": {"digits_threads": "unset", "wall_seconds": 200.0,
                                         "experiments_per_hour": 72},
                              "jobs_2": {"digits_threads": "1", "wall_seconds": 190.0,
                                         "experiments_per_hour": 76},
                              "jobs_2_speedup": 1.05, "steps": 4000},
               "recipes": {"default": {"settings": {}, "test_accuracy": 0.9101,
                                       "val_accuracy": 0.91, "training_seconds": 120.0,
                                       "images_per_second": 5400},
                           "fast": {"settings": {"train.precision": "bfloat16"},
                                    "test_accuracy": 0.9261, "val_accuracy": 0.93,
                                    "training_seconds": 58.0,
                                    "images_per_second": 9931}}}  # fmt: skip
    text = table.format_table(results)
    for name in ("train_stage_bf16", "keras_fit", "gradients_only_bf16", "evaluate_stage",
                 "no-op dvc repro", "1,000.00 MiB", "float32: 300 GFLOP/s",
                 "bfloat16: 900 GFLOP/s", "= 46,036 images/s", "bfloat16 units: avx512_bf16",
                 "capped at AVX512_CORE", "(float32 / bfloat16 3.00x)",
                 "6.0 s importing of  12.0 s (50%)", "evaluate-only dvc exp run: 20.0 s",
                 "--jobs 2 (DIGITS_THREADS 1): 80.0 s, 180 experiments/hour", "1.25x as fast",
                 "queue of 4,000-step experiments: --jobs 2 finishes 1.05x as fast",
                 "fast recipe (bfloat16): test accuracy 0.9261", "58.0 s of training",
                 "default recipe (float32): test accuracy 0.9101"):  # fmt: skip
        assert name in text, name
