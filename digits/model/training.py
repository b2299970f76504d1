"""The training loop of the train stage, importable on its own (the benchmark times it).

The whole training set stays in memory as one tensor; each chunk of ``eval_every`` steps runs
inside a single ``tf.function`` loop that gathers its batches by index, so Python and input
pipeline overhead is paid once per chunk, not once per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from digits.data.arrays import Split
from digits.errors import ParamsError
from digits.model import networks
from digits.model.checkpoint import TrainingState
from digits.model.history import HISTORY_COLUMNS, best_row, patience_exhausted
from digits.params import TrainParams
from digits.runtime.stopping import raise_if_stopped

EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class TrainResult:
    """What training produced: the model, one history row per evaluation, final metrics,
    and the facts of the run that are no score (its model size and timings)."""

    model: keras.Model
    history: pd.DataFrame
    metrics: dict[str, float | int]
    run_facts: dict[str, Any]


def check_precision(precision: str) -> None:
    """Refuse ``bfloat16`` where oneDNN has no bfloat16 convolution.

    CPUs with AVX-512 run it (in hardware with AVX512-BF16 or AMX, emulated without); on an
    AVX2-only CPU oneDNN cannot build the kernel and training would stop at its first step.

    Raises:
        ParamsError: ``bfloat16`` on such a CPU.
    """
    if precision != "bfloat16":
        return
    try:
        tf.nn.conv2d(
            tf.ones([1, 4, 4, 1], tf.bfloat16), tf.ones([2, 2, 1, 1], tf.bfloat16), 1, "SAME"
        )
    except tf.errors.OpError:
        raise ParamsError(
            "train.precision: bfloat16 is not supported on this CPU (oneDNN has no bfloat16 "
            "convolution below AVX-512); use train.precision=float32"
        ) from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def batch_schedule(count: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Indices of every batch: a fresh shuffle of ``range(count)`` each epoch.

    Batches may straddle two epochs, so every image is seen equally often.

    Returns:
        (steps, batch_size) int32.

    Raises:
        ParamsError: A batch would be larger than the training set (it would hold an image
            twice).
    """
    if batch_size > count:
        raise ParamsError(
            f"train.batch_size: {batch_size} is larger than the training set ({count} images); "
            f"use at most {count}, or a smaller data.validation_size"
        )
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch_size // count)
    order = np.concatenate([rng.permutation(count) for _ in range(epochs)])
    return order[: steps * batch_size].astype(np.int32).reshape(steps, batch_size)


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """Adam or SGD with momentum; ``one_cycle`` warms up linearly for 30% of the steps to
    ``learning_rate``, then decays it along a cosine to zero."""
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = params.learning_rate
    if params.lr_schedule == "one_cycle":
        warmup_steps = max(1, int(0.3 * params.steps))
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=params.learning_rate / 25,
            decay_steps=max(1, params.steps - warmup_steps),
            warmup_target=params.learning_rate,
            warmup_steps=warmup_steps,
        )
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=params.momentum)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def loss_and_accuracy(
    model: keras.Model, split: Split, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split``, in inference mode."""
    logits = networks.predict_logits(model, split.x, batch_size)
    return networks.logit_loss_and_accuracy(logits, split.y)


def shift_images(images: tf.Tensor, max_shift: int, seed: tf.Tensor) -> tf.Tensor:
    """Move each image by its own random whole-pixel offset, up to ``max_shift`` pixels in
    each direction; what moves in is zeros (background).

    Stateless: the offsets depend only on ``seed`` (shape (2,), int64), so training draws them
    from the seed and the step, and a run resumed from a checkpoint draws the same ones.
    Keras' ``RandomTranslation`` would be a layer of the model: saved and served with every
    model, with its random state among the model's variables, and it moves by fractions of
    the image with interpolation. This lives in the training loop only and crops the padded
    batch by whole pixels, as cheap as two gathers.

    Args:
        images: (batch, height, width, channels).
        max_shift: Largest offset in pixels.
        seed: The stateless random seed.
    """
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32
    )
    pad = [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]]
    padded = tf.pad(images, pad)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis, :]  # (batch, height)
    columns = offsets[:, 1:] + tf.range(width)[tf.newaxis, :]  # (batch, width)
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, columns, axis=2, batch_dims=1)


def make_chunk_runner(
    model: keras.Model, optimizer, train: Split, augment_shift: int = 0, seed: int = 0
) -> Callable:
    """Return a compiled function that runs one optimizer step per row of ``batches``.

    It returns the summed loss and the number of correct predictions over those steps. With
    ``augment_shift``, each batch is moved by ``shift_images``, seeded by ``seed`` and the
    optimizer's step count (which a checkpoint restores).
    """
    images = tf.constant(train.x)  # (n, 28, 28, 1) float32
    labels = tf.constant(train.y)  # (n, 10) float32
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    optimizer.build(variables)
    augment_seed = tf.constant(seed, tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def run_chunk(batches):  # (steps, batch_size) int32
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for step in tf.range(tf.shape(batches)[0]):
            x = tf.gather(images, batches[step])
            if augment_shift:
                step_seed = tf.stack([augment_seed, tf.cast(optimizer.iterations, tf.int64)])
                x = shift_images(x, augment_shift, step_seed)
            y = tf.gather(labels, batches[step])
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_fn(y, logits)
            optimizer.apply(tape.gradient(loss, variables), variables)
            loss_sum += loss
            hits = tf.equal(tf.argmax(logits, axis=1), tf.argmax(y, axis=1))
            correct += tf.reduce_sum(tf.cast(hits, tf.float32))
        return loss_sum, correct

    return run_chunk


def train(
    params: TrainParams,
    train_split: Split,
    validation_split: Split,
    on_eval: Callable[[dict], None] = lambda row: None,
    resume: TrainingState | None = None,
    on_checkpoint: Callable[[TrainingState], None] | None = None,
) -> TrainResult:
    """Build and train the model; evaluate every ``params.eval_every`` steps and at the last.

    With ``params.patience`` > 0, training stops once that many evaluations in a row have
    not lowered ``val_loss``; with ``params.restore_best_weights``, the model returned holds
    the weights of the evaluation with the lowest ``val_loss``.

    Args:
        params: The ``train`` section.
        train_split: Images to fit.
        validation_split: Images to watch (never the test set).
        on_eval: Called with each history row as it is made (progress, tracking).
        resume: A state from ``on_checkpoint`` of an interrupted run with the same params
            and data: training continues from it exactly as if it had never stopped.
        on_checkpoint: Called after each evaluation, before ``on_eval``, with the state to
            resume from (to save a checkpoint).

    Returns:
        The trained model, its history, final metrics and run facts.
    """
    check_precision(params.precision)
    seed_everything(params.seed)
    model = networks.build_model(params)
    optimizer = make_optimizer(params)
    run_chunk = make_chunk_runner(model, optimizer, train_split, params.augment_shift, params.seed)
    schedule = batch_schedule(len(train_split.x), params.batch_size, params.steps, params.seed)

    rows, step, train_seconds, best_variables = [], 0, 0.0, None
    started = time.perf_counter()
    if resume is not None:
        assign(model.variables, resume.variables)
        assign(optimizer.variables, resume.optimizer_variables)
        rows, step, train_seconds = list(resume.rows), resume.step, resume.train_seconds
        best_variables = resume.best_variables
        started -= resume.elapsed_seconds
    while step < params.steps and not patience_exhausted(rows, params.patience):
        raise_if_stopped()
        chunk = schedule[step : step + params.eval_every]
        chunk_started = time.perf_counter()
        loss_sum, correct = run_chunk(chunk)
        train_seconds += time.perf_counter() - chunk_started
        step += len(chunk)
        val_loss, val_accuracy = loss_and_accuracy(model, validation_split)
        row = {
            "step": step,
            "train_loss": float(loss_sum) / len(chunk),
            "train_accuracy": float(correct) / chunk.size,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": round(time.perf_counter() - started, 3),
        }
        rows.append(row)
        if params.restore_best_weights and best_row(rows) == len(rows) - 1:
            best_variables = [variable.numpy() for variable in model.variables]
        if on_checkpoint is not None:
            on_checkpoint(
                TrainingState(
                    step=step,
                    rows=list(rows),
                    train_seconds=train_seconds,
                    elapsed_seconds=time.perf_counter() - started,
                    variables=[variable.numpy() for variable in model.variables],
                    optimizer_variables=[variable.numpy() for variable in optimizer.variables],
                    best_variables=best_variables,
                )
            )
        on_eval(row)

    best = best_row(rows)
    if params.restore_best_weights:
        assign(model.variables, best_variables)
    final = rows[best] if params.restore_best_weights else rows[-1]
    train_loss, train_accuracy = loss_and_accuracy(model, train_split)
    metrics = {
        "val_loss": final["val_loss"],
        "val_accuracy": final["val_accuracy"],
        "steps": params.steps,
        "best_step": rows[best]["step"],
        "stopped_step": step,
    }
    # Not DVC metrics (metrics/train_run.json): the timings differ between any two runs, and
    # `dvc exp show` puts every metric before the params, so these pushed the params out of
    # view. The training-set scores are here too: validation chooses, test measures, and the
    # training curve is in the history.
    run_facts = {
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "parameters": int(model.count_params()),
        "training_seconds": round(time.perf_counter() - started, 3),
        "images_per_second": round(step * params.batch_size / train_seconds, 1),
    }
    return TrainResult(model, pd.DataFrame(rows, columns=HISTORY_COLUMNS), metrics, run_facts)


def assign(variables: list, values: list[np.ndarray]) -> None:
    """Set each variable to its value; the lists must match one to one in shape and dtype."""
    if len(variables) != len(values):
        raise ValueError(f"{len(values)} values for {len(variables)} variables")
    for variable, value in zip(variables, values, strict=True):
        if tuple(variable.shape) != value.shape or variable.dtype != value.dtype:
            raise ValueError(
                f"{variable.path}: {variable.dtype} {tuple(variable.shape)} cannot take "
                f"{value.dtype} {value.shape}"
            )
        variable.assign(value)
