"""The arithmetic limit: a hand count of the FLOPs and a positive matmul rate."""

import pytest
from helpers.paths import REPO_ROOT

from benchmarks import arithmetic
from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace


@pytest.fixture
def tiny_params():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return params_replace(params, conv1_filters=4, conv2_filters=8, fc_size=16, batch_size=8)


def test_training_flops_of_the_tutorial_network_match_a_hand_count():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    conv1, conv2 = 2 * 28 * 28 * 5 * 5 * 16, 2 * 14 * 14 * 5 * 5 * 16 * 36
    fc, logits = 2 * 1764 * 128, 2 * 128 * 10
    # Forward, then twice that backward, less conv1's unneeded input gradient.
    expected = 3 * (conv1 + conv2 + fc + logits) - conv1
    assert arithmetic.training_flops_per_image(build_model(params)) == expected == 19_551_232


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_rate_is_positive(dtype):
    assert arithmetic.matmul_gflops(size=64, repeats=1, products=2, dtype=dtype) > 0


def test_limit_divides_each_precision_s_rate_by_the_flops(tiny_params):
    limits = arithmetic.arithmetic_limit(tiny_params)
    assert set(limits) == {"float32", "bfloat16"}
    for limit in limits.values():
        flops = limit["training_mflop_per_image"] * 1e6
        rate = limit["matmul_gflops"] * 1e9 / flops
        assert limit["images_per_second"] == pytest.approx(rate, 0.01)
