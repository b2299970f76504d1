"""The benchmark's harness: medians and ratios."""

from benchmarks import harness


def test_summarise_takes_medians_and_ratios_to_the_project():
    rounds = {"train_stage": [30.0, 10.0, 20.0], "keras_fit": [5.0, 10.0, 15.0]}
    summary = harness.summarise(rounds, "train_stage")
    assert summary["images_per_second"] == {"train_stage": 20.0, "keras_fit": 10.0}
    assert summary["train_stage_over"] == {"keras_fit": 2.0}
    assert summary["rounds"] is rounds
