import pytest
from helpers.idxdata import tiny_split
from helpers.paths import REPO_ROOT

from benchmarks import checkpoint_cost as bench
from digits.params import load_params
from digits.params import replace as params_replace


def test_checkpoint_figures_time_a_save_against_the_steps_between_two(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    params = params_replace(params, fc_size=16, steps=20, eval_every=20, batch_size=8)
    variables = 5 * 5 * 16 + 16 + 5 * 5 * 16 * 36 + 36 + 7 * 7 * 36 * 16 + 16 + 16 * 10 + 10

    figures = bench.checkpoint_figures(params, tiny_split(40, 1), repeats=2)

    assert figures["steps_per_checkpoint"] == 20 and len(figures["save_rounds"]) == 2
    # weights, Adam's two moments and 4-byte floats: at least 3 x 4 bytes per parameter
    assert figures["checkpoint_bytes"] > 12 * variables
    with_best = figures["checkpoint_bytes_with_best_weights"]
    assert with_best > figures["checkpoint_bytes"] + 4 * variables
    share = 100 * figures["save_seconds"] / figures["steps_seconds"]
    # the seconds are rounded to 0.1 ms
    assert figures["save_percent_of_training"] == pytest.approx(share, rel=0.05)
    assert list(tmp_path.iterdir()) == [], "the checkpoint folder is removed"
    (line,) = bench.format_lines(figures)
    assert line.startswith("checkpoint every 20 steps of 8: ")
