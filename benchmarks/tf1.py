"""The classic tutorial's CNN as a TF1 graph, trained and run through ``feed_dict``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from benchmarks.harness import Runner
from digits.data.arrays import Split
from digits.model.networks import INIT_BIAS, INIT_STDDEV
from digits.params import TrainParams


def graph(params: TrainParams) -> tuple[tf.Graph, dict[str, tf.Tensor | tf.Operation]]:
    """The classic tutorial's CNN as a TF1 graph: placeholders, conv/pool/ReLU twice, fc.

    Built in its own graph so it does not touch the eager models.

    Returns:
        The graph and its ``x``, ``y``, ``logits``, ``train_op`` and ``init``.

    Raises:
        ValueError: ``params.model`` is not ``cnn``, the only model written here.
    """
    if params.model != "cnn":
        raise ValueError(f"train.model: {params.model!r}; the TF1 contender is only a cnn")
    v1 = tf.compat.v1
    tf1_graph = tf.Graph()
    with tf1_graph.as_default():
        v1.set_random_seed(params.seed)
        x = v1.placeholder(tf.float32, [None, 28, 28, 1], name="x")
        y = v1.placeholder(tf.float32, [None, 10], name="y")

        def variable(shape: list[int]) -> tuple[tf.Variable, tf.Variable]:
            weights = v1.Variable(v1.truncated_normal(shape, stddev=INIT_STDDEV))
            return weights, v1.Variable(tf.fill(shape[-1:], INIT_BIAS))

        hidden, channels = x, 1
        for filters in (params.conv1_filters, params.conv2_filters):
            weights, biases = variable([params.kernel_size, params.kernel_size, channels, filters])
            padding = params.padding.upper()
            hidden = tf.nn.conv2d(hidden, weights, strides=1, padding=padding) + biases
            hidden = tf.nn.relu(tf.nn.max_pool2d(hidden, 2, strides=2, padding=padding))
            channels = filters
        flat = tf.reshape(hidden, [-1, int(np.prod(hidden.shape[1:]))])
        weights, biases = variable([flat.shape[1], params.fc_size])
        hidden = tf.nn.relu(flat @ weights + biases)
        weights, biases = variable([params.fc_size, 10])
        logits = hidden @ weights + biases
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train_op = v1.train.AdamOptimizer(params.learning_rate).minimize(loss)
        initialize = v1.global_variables_initializer()
    tf1_graph.finalize()
    return tf1_graph, {"x": x, "y": y, "logits": logits, "train_op": train_op, "init": initialize}


def session(params: TrainParams) -> tuple[tf.compat.v1.Session, dict]:
    """A session on ``graph(params)`` with its variables initialised."""
    tf1_graph, nodes = graph(params)
    tf1_session = tf.compat.v1.Session(graph=tf1_graph)
    tf1_session.run(nodes["init"])
    return tf1_session, nodes


def trainer(params: TrainParams, train_split: Split) -> Runner:
    """The tutorial's loop: NumPy picks a random batch, ``session.run`` gets it by feed_dict."""
    tf1_session, nodes = session(params)
    rng = np.random.default_rng(params.seed)

    def run(steps: int) -> None:
        for _ in range(steps):
            batch = rng.integers(0, len(train_split.x), params.batch_size)
            feed = {nodes["x"]: train_split.x[batch], nodes["y"]: train_split.y[batch]}
            tf1_session.run(nodes["train_op"], feed_dict=feed)

    return run


def predictor(params: TrainParams, images: np.ndarray, batch_size: int) -> Runner:
    """Batched TF1 inference: one ``session.run(logits, feed_dict)`` per batch."""
    tf1_session, nodes = session(params)

    def run(steps: int) -> None:
        for _ in range(steps):
            for start in range(0, len(images), batch_size):
                tf1_session.run(nodes["logits"], {nodes["x"]: images[start : start + batch_size]})

    return run
