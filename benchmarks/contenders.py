"""The contenders the train stage is timed against, on the same model, data and batch size.

Training: the train stage's own loop (``digits.model.training``, imported, not copied), plain
``model.fit``, the classic TF1 ``feed_dict`` loop (``benchmarks.tf1``) and a ceiling: the
train stage's step without its update. Inference: the evaluate stage's batched prediction
against a TF1 session.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks import tf1
from benchmarks.harness import Runner, round_rates, summarise
from digits.data.arrays import Split
from digits.model import training
from digits.model.networks import build_model, predict_logits
from digits.params import TrainParams, replace


def relu_first_model(model: keras.Model) -> keras.Model:
    """``model``'s own layers (shared weights), each block as conv -> ReLU -> pool.

    The same outputs as the tutorial's conv -> pool -> ReLU (ReLU is monotonic, so it commutes
    with max-pooling), timed to see whether TensorFlow fuses the ReLU into the convolution.
    """
    hidden = inputs = keras.Input(shape=model.input_shape[1:])
    for index in (1, 2):
        for name in (f"conv{index}", f"relu{index}", f"pool{index}"):
            hidden = model.get_layer(name)(hidden)
    for name in ("flatten", "fc", "logits"):
        hidden = model.get_layer(name)(hidden)
    return keras.Model(inputs, hidden, name=f"{model.name}_relu_first")


def project_trainer(params: TrainParams, train_split: Split, relu_first: bool = False) -> Runner:
    """The train stage's own loop: its seeding, model, optimizer, schedule and chunk runner
    (``relu_first``: on ``relu_first_model`` of its model)."""
    training.seed_everything(params.seed)
    model = build_model(params)
    if relu_first:
        model = relu_first_model(model)
    optimizer = training.make_optimizer(params)
    run_chunk = training.make_chunk_runner(model, optimizer, train_split)
    count = len(train_split.x)

    def run(steps: int) -> None:
        schedule = training.batch_schedule(count, params.batch_size, steps, params.seed)
        loss_sum, _ = run_chunk(schedule)
        float(loss_sum)  # wait for the result

    return run


def gradients_only_trainer(params: TrainParams, train_split: Split) -> Runner:
    """The train stage's step without its update: a ceiling for any training step of this
    model built from TensorFlow's kernels.

    The same model, loss, batches and compiled loop as ``training.make_chunk_runner``, but the
    gradients are only summed into the loop's result (which keeps them from being pruned);
    no weight changes. Steps run one after another, as they must when each step's forward
    pass needs the weights the previous one updated: left to overlap, this loop would run
    faster than any real training step could.
    """
    training.seed_everything(params.seed)
    model = build_model(params)
    images, labels = tf.constant(train_split.x), tf.constant(train_split.y)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def run_chunk(batches: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for step in tf.range(tf.shape(batches)[0]):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            x, y = tf.gather(images, batches[step]), tf.gather(labels, batches[step])
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            gradients = tape.gradient(loss, variables)
            total += tf.add_n([tf.reduce_sum(gradient) for gradient in gradients])
        return total

    count = len(train_split.x)

    def run(steps: int) -> None:
        float(run_chunk(training.batch_schedule(count, params.batch_size, steps, params.seed)))

    return run


def keras_fit_trainer(params: TrainParams, train_split: Split) -> Runner:
    """Plain ``model.fit`` on NumPy arrays, same model, optimizer and loss."""
    model = build_model(params)
    model.compile(
        optimizer=training.make_optimizer(params),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def run(steps: int) -> None:
        count = steps * params.batch_size
        if count > len(train_split.x):
            raise ValueError(
                f"{steps} steps of {params.batch_size} need {count} images; the train split has "
                f"{len(train_split.x)}: time fewer steps per round"
            )
        model.fit(
            train_split.x[:count], train_split.y[:count], batch_size=params.batch_size, verbose=0
        )

    return run


def project_predictor(model: keras.Model, images: np.ndarray, batch_size: int) -> Runner:
    """The evaluate stage's batched inference (``models.predict_logits``) on ``images``."""

    def run(steps: int) -> None:
        for _ in range(steps):
            predict_logits(model, images, batch_size)

    return run


def throughput_figures(
    params: TrainParams,
    train_split: Split,
    inference_split: Split,
    eval_batch_size: int,
    steps: int,
    repeats: int,
    bfloat16: bool = True,
) -> dict[str, dict]:
    """Training and inference images/s of each contender (``summarise``).

    ``bfloat16``: time the bfloat16 contenders too (False where the CPU runs bfloat16 many
    times slower than float32: ``digits.runtime.cpu.check_bfloat16_speed``). Inference runs at the
    evaluate stage's batch size on ``inference_split``; the validation
    split serves, as only the evaluate stage reads the test set.
    """
    bf16 = replace(params, precision="bfloat16")
    trainers = {
        "train_stage": project_trainer(params, train_split),
        "train_stage_bf16": project_trainer(bf16, train_split),
        "keras_fit": keras_fit_trainer(params, train_split),
        "keras_fit_bf16": keras_fit_trainer(bf16, train_split),
        "tf1_feed_dict": tf1.trainer(params, train_split),
        "gradients_only": gradients_only_trainer(params, train_split),
        "gradients_only_bf16": gradients_only_trainer(bf16, train_split),
        "relu_first": project_trainer(params, train_split, relu_first=True),
    }
    if not bfloat16:
        trainers = {name: run for name, run in trainers.items() if not name.endswith("_bf16")}
    training = round_rates(trainers, steps, repeats, params.batch_size)
    # untrained weights run as fast as trained ones
    model, model_bf16 = build_model(params), build_model(bf16)
    images = inference_split.x
    predictors = {
        "evaluate_stage": project_predictor(model, images, eval_batch_size),
        "evaluate_stage_bf16": project_predictor(model_bf16, images, eval_batch_size),
        "tf1_feed_dict": tf1.predictor(params, images, eval_batch_size),
        "relu_first": project_predictor(relu_first_model(model), images, eval_batch_size),
    }
    if not bfloat16:
        predictors.pop("evaluate_stage_bf16")
    # one pass over the split per round
    inference = round_rates(predictors, 1, repeats, len(images))
    return {
        "train": summarise(training, "train_stage"),
        "inference": summarise(inference, "evaluate_stage"),
    }
