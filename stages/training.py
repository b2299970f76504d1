"""The training loop of the train stage, importable on its own (the benchmark times it).

The whole training set stays in memory as one tensor; each chunk of ``eval_every`` steps runs
inside a single ``tf.function`` loop that gathers its batches by index, so Python and input
pipeline overhead is paid once per chunk, not once per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from stages import models
from stages.arrays import Split
from stages.params import TrainParams

HISTORY_COLUMNS = ["step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]
EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class TrainResult:
    """What training produced: the model, one history row per evaluation, final metrics."""

    model: keras.Model
    history: pd.DataFrame
    metrics: dict[str, float | int]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def batch_schedule(count: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Indices of every batch: a fresh shuffle of ``range(count)`` each epoch.

    Batches may straddle two epochs, so every image is seen equally often.

    Returns:
        (steps, batch_size) int32.
    """
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
    logits = models.predict_logits(model, split.x, batch_size)
    return models.logit_loss_and_accuracy(logits, split.y)


def make_chunk_runner(model: keras.Model, optimizer, train: Split) -> Callable:
    """Return a compiled function that runs one optimizer step per row of ``batches``.

    It returns the summed loss and the number of correct predictions over those steps.
    """
    images = tf.constant(train.x)  # (n, 28, 28, 1) float32
    labels = tf.constant(train.y)  # (n, 10) float32
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def run_chunk(batches):  # (steps, batch_size) int32
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for step in tf.range(tf.shape(batches)[0]):
            x = tf.gather(images, batches[step])
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
) -> TrainResult:
    """Build and train the model; evaluate every ``params.eval_every`` steps.

    Args:
        params: The ``train`` section.
        train_split: Images to fit.
        validation_split: Images to watch (never the test set).
        on_eval: Called with each history row as it is made (progress, tracking).

    Returns:
        The trained model, its history and final metrics.
    """
    seed_everything(params.seed)
    model = models.build_model(params)
    optimizer = make_optimizer(params)
    run_chunk = make_chunk_runner(model, optimizer, train_split)
    schedule = batch_schedule(len(train_split.x), params.batch_size, params.steps, params.seed)

    rows, step, train_seconds = [], 0, 0.0
    started = time.perf_counter()
    while step < params.steps:
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
        on_eval(row)

    train_loss, train_accuracy = loss_and_accuracy(model, train_split)
    metrics = {
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "val_loss": rows[-1]["val_loss"],
        "val_accuracy": rows[-1]["val_accuracy"],
        "parameters": int(model.count_params()),
        "steps": params.steps,
        "training_seconds": round(time.perf_counter() - started, 3),
        "images_per_second": round(params.steps * params.batch_size / train_seconds, 1),
    }
    return TrainResult(model, pd.DataFrame(rows, columns=HISTORY_COLUMNS), metrics)
