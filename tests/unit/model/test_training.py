import hashlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers.idxdata import tiny_split
from helpers.paths import REPO_ROOT

from digits.data.arrays import Split
from digits.errors import ParamsError
from digits.model import checkpoint, networks, training
from digits.params import load_params
from digits.params import replace as params_replace


@pytest.fixture
def tiny_params():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return params_replace(
        params, conv1_filters=4, conv2_filters=8, fc_size=16, steps=12, eval_every=5,
        batch_size=8, learning_rate=0.003, dropout=0.25,
    )  # fmt: skip


def test_batch_schedule_covers_each_image_once_per_epoch():
    schedule = training.batch_schedule(count=10, batch_size=4, steps=5, seed=1)
    assert schedule.shape == (5, 4) and schedule.dtype == np.int32
    flat = schedule.ravel()
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert not np.array_equal(flat[:10], flat[10:20]), "each epoch is reshuffled"
    again = training.batch_schedule(count=10, batch_size=4, steps=5, seed=1)
    np.testing.assert_array_equal(schedule, again)


def test_a_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ParamsError, match=r"train.batch_size: 11 is larger than the training set"):
        training.batch_schedule(count=10, batch_size=11, steps=5, seed=1)
    assert training.batch_schedule(count=10, batch_size=10, steps=1, seed=1).shape == (1, 10)


def test_shift_images_moves_each_image_by_at_most_max_shift_and_fills_zeros():
    images = np.random.default_rng(0).uniform(0.1, 1.0, (64, 9, 7, 1)).astype(np.float32)
    seed = tf.constant([3, 5], tf.int64)
    shifted = training.shift_images(tf.constant(images), 2, seed).numpy()

    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = set()
    for image, out in zip(padded, shifted, strict=True):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(image[dy : dy + 9, dx : dx + 7], out)
        ]
        assert len(found) == 1, "each output is the image moved by one offset in range"
        offsets.add(found[0])
    assert len(offsets) > 12, "images move independently"
    again = training.shift_images(tf.constant(images), 2, seed).numpy()
    np.testing.assert_array_equal(shifted, again)
    other = training.shift_images(tf.constant(images), 2, tf.constant([3, 6], tf.int64))
    assert not np.array_equal(shifted, other.numpy())


def test_augment_shift_changes_what_is_trained(tiny_params):
    data = (tiny_split(40, 1), tiny_split(10, 2))
    plain = training.train(tiny_params, *data)
    shifted = training.train(params_replace(tiny_params, augment_shift=2), *data)
    assert not np.array_equal(plain.model.get_weights()[0], shifted.model.get_weights()[0])


def test_one_cycle_warms_up_then_decays(tiny_params):
    params = params_replace(tiny_params, steps=100, lr_schedule="one_cycle")
    optimizer = training.make_optimizer(params)
    rates = []
    for step in (0, 30, 99):
        optimizer.iterations.assign(step)  # the rate a step uses is the rate at its iteration
        rates.append(float(optimizer.learning_rate))
    assert rates[0] == pytest.approx(params.learning_rate / 25)
    assert rates[1] == pytest.approx(params.learning_rate)
    assert rates[2] < rates[0]


def test_tiny_training_run_learns_and_reports(tiny_params):
    params = params_replace(tiny_params, steps=60, eval_every=20)
    rows = []
    result = training.train(params, tiny_split(80, 1), tiny_split(20, 2), on_eval=rows.append)

    assert [row["step"] for row in rows] == [20, 40, 60]
    assert list(result.history.columns) == training.HISTORY_COLUMNS
    assert result.run_facts["parameters"] == result.model.count_params()
    assert result.metrics["val_accuracy"] == rows[-1]["val_accuracy"]
    assert result.run_facts["images_per_second"] > 0
    assert not set(result.metrics) & set(result.run_facts), "scores and run facts apart"
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.metrics["val_accuracy"] >= 0.8, "row bands are easy to tell apart"


@pytest.mark.cpu_dependent
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_same_params_and_data_give_identical_weights_and_metrics(tiny_params, precision):
    tiny_params = params_replace(tiny_params, precision=precision)
    first = training.train(tiny_params, tiny_split(40, 1), tiny_split(10, 2))
    second = training.train(tiny_params, tiny_split(40, 1), tiny_split(10, 2))
    changed = params_replace(tiny_params, seed=tiny_params.seed + 1)
    third = training.train(changed, tiny_split(40, 1), tiny_split(10, 2))

    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.metrics == second.metrics, "timings are run facts, not metrics"
    assert first.run_facts["parameters"] == second.run_facts["parameters"]
    pd.testing.assert_frame_equal(
        first.history.drop(columns="seconds"), second.history.drop(columns="seconds")
    )
    assert not np.array_equal(first.model.get_weights()[0], third.model.get_weights()[0])


@pytest.mark.cpu_dependent
def test_bfloat16_trains_other_weights_than_float32_and_keeps_float32_weights(tiny_params):
    params = params_replace(tiny_params, steps=60, eval_every=20)
    split, validation = tiny_split(80, 1), tiny_split(20, 2)
    full = training.train(params, split, validation)
    mixed = training.train(params_replace(params, precision="bfloat16"), split, validation)
    assert all(weight.dtype == np.float32 for weight in mixed.model.get_weights())
    assert not np.array_equal(full.model.get_weights()[0], mixed.model.get_weights()[0])
    assert mixed.metrics["val_accuracy"] >= 0.8, "row bands are easy to tell apart"


def weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def plain_loop_weights_sha256(params, split: Split) -> str:
    """The weights after ``params.steps`` steps of the bare loop that ``training.train`` is
    built on: seeded, built and fed the same way, with no evaluation, early stopping or
    checkpoint around it. Computed on the machine under test: its kernels round as the
    train stage's do here (a hash pinned on one CPU differs on another)."""
    training.seed_everything(params.seed)
    model = networks.build_model(params)
    optimizer = training.make_optimizer(params)
    run_chunk = training.make_chunk_runner(
        model, optimizer, split, params.augment_shift, params.seed
    )
    schedule = training.batch_schedule(len(split.x), params.batch_size, params.steps, params.seed)
    for start in range(0, params.steps, params.eval_every):
        run_chunk(schedule[start : start + params.eval_every])
    return weights_sha256(model)


@pytest.mark.cpu_dependent
def test_default_recipe_with_early_stopping_off_trains_bit_for_bit_as_the_bare_loop():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    assert params.patience == 0 and params.restore_best_weights is False, "off by default"
    params = params_replace(params, steps=40, eval_every=20)
    split = tiny_split(200, 1)
    states = []

    result = training.train(params, split, tiny_split(50, 2), on_checkpoint=states.append)

    assert weights_sha256(result.model) == plain_loop_weights_sha256(params, split)
    assert [state.step for state in states] == [20, 40], "a checkpoint at every evaluation"
    assert result.metrics["stopped_step"] == 40 and result.metrics["best_step"] == 40


def mislabeled_split(count: int, seed: int, every: int) -> Split:
    """``tiny_split`` with every ``every``-th label moved to the next class: once the network
    has learned the bands, growing confidence only raises the loss on those images."""
    split = tiny_split(count, seed)
    labels = split.labels.copy()
    labels[::every] = (labels[::every] + 1) % 10
    return Split(split.x, np.eye(10, dtype=np.float32)[labels], split.class_names)


def test_early_stopping_on_rising_validation_loss_keeps_the_best_weights(tiny_params):
    params = params_replace(
        tiny_params, dropout=0.0, steps=400, eval_every=20, batch_size=16,
        patience=3, restore_best_weights=True,
    )  # fmt: skip
    validation = mislabeled_split(40, 2, every=4)

    result = training.train(params, tiny_split(60, 1), validation)

    history = result.history
    best = history.loc[history["val_loss"].idxmin()]
    assert result.metrics["stopped_step"] < params.steps
    assert list(history["step"])[-1] == result.metrics["stopped_step"], "history ends there"
    assert result.metrics["best_step"] == best["step"]
    assert result.metrics["stopped_step"] == best["step"] + params.patience * params.eval_every
    assert history["val_loss"].iloc[-1] > best["val_loss"], "validation loss rose"
    assert best["val_accuracy"] == history["val_accuracy"].max()
    # The returned model is the best evaluation's: recomputed, its numbers are that row's.
    val_loss, val_accuracy = training.loss_and_accuracy(result.model, validation)
    assert (val_loss, val_accuracy) == (best["val_loss"], best["val_accuracy"])
    assert (result.metrics["val_loss"], result.metrics["val_accuracy"]) == (val_loss, val_accuracy)


def test_without_restoring_the_model_is_the_one_that_stopped(tiny_params):
    params = params_replace(
        tiny_params, dropout=0.0, steps=400, eval_every=20, batch_size=16, patience=3
    )
    validation = mislabeled_split(40, 2, every=4)

    result = training.train(params, tiny_split(60, 1), validation)

    last = result.history.iloc[-1]
    assert result.metrics["stopped_step"] == last["step"] < params.steps
    assert training.loss_and_accuracy(result.model, validation) == (
        last["val_loss"],
        last["val_accuracy"],
    )


class Interrupted(Exception):
    """Stands for Ctrl-C in the middle of training."""


@pytest.mark.cpu_dependent
@pytest.mark.parametrize(
    "changes",
    [
        {"dropout": 0.25},
        {"optimizer": "sgd", "lr_schedule": "one_cycle", "dropout": 0.5, "patience": 4},
        {"augment_shift": 2, "precision": "bfloat16"},
    ],
    ids=["adam-dropout", "sgd-one-cycle-early-stopping", "augment-bfloat16"],
)
def test_resuming_half_way_from_a_checkpoint_file_gives_identical_weights(
    tiny_params, tmp_path, changes
):
    params = params_replace(tiny_params, steps=60, eval_every=10, **changes)
    params = params_replace(params, restore_best_weights=params.patience > 0)
    data = (tiny_split(40, 1), tiny_split(10, 2))
    path, key = tmp_path / "checkpoint.npz", "key"
    uninterrupted = training.train(params, *data)

    def save_then_stop_at_30(state):
        checkpoint.save(path, key, state, run_id=None)
        if state.step == 30:
            raise Interrupted

    with pytest.raises(Interrupted):
        training.train(params, *data, on_checkpoint=save_then_stop_at_30)
    saved = checkpoint.load(path, key)
    resumed_rows = []
    resumed = training.train(params, *data, on_eval=resumed_rows.append, resume=saved.state)

    assert saved.state.step == 30
    assert [row["step"] for row in resumed_rows] == [40, 50, 60][: len(resumed_rows)]
    for a, b in zip(uninterrupted.model.variables, resumed.model.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    pd.testing.assert_frame_equal(
        uninterrupted.history.drop(columns="seconds"), resumed.history.drop(columns="seconds")
    )
    assert uninterrupted.metrics == resumed.metrics


def test_eval_every_larger_than_steps_evaluates_at_the_last_step(tiny_params):
    params = params_replace(tiny_params, steps=7, eval_every=500)
    rows = []
    result = training.train(params, tiny_split(40, 1), tiny_split(10, 2), on_eval=rows.append)
    assert [row["step"] for row in rows] == [7]
    assert result.history["step"].tolist() == [7]


def test_the_final_step_is_in_the_history_when_eval_every_does_not_divide_steps(tiny_params):
    params = params_replace(tiny_params, steps=12, eval_every=5)
    result = training.train(params, tiny_split(40, 1), tiny_split(10, 2))
    assert result.history["step"].tolist() == [5, 10, 12]
