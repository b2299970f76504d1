"""The arithmetic limit: how many training images/s the machine's matrix-product rate allows."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from digits.model.networks import build_model
from digits.params import TrainParams


def training_flops_per_image(model: keras.Model) -> int:
    """Floating-point operations of one training image through ``model``, counted by hand.

    A multiply-add is 2; the forward pass is the convolutions' and dense layers' products
    (biases, pooling and activations are left out); the backward pass costs twice as much,
    but for the input gradient of the first layer, which nothing needs.
    """
    forward = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (height, width, in, out)
            positions = int(np.prod(layer.output.shape[1:3]))
            forward.append(2 * positions * int(np.prod(kernel)))
        elif isinstance(layer, keras.layers.Dense):
            forward.append(2 * int(np.prod(layer.kernel.shape)))
    return 3 * sum(forward) - forward[0]


def matmul_gflops(
    size: int = 2048, repeats: int = 5, products: int = 10, dtype: str = "float32"
) -> float:
    """The machine's matrix-product rate through TensorFlow in ``dtype``, best of ``repeats``.

    ``bfloat16`` multiplies bfloat16 matrices (oneDNN uses the CPU's bfloat16 units when it
    has them, AVX512-BF16 or AMX, and converts through float32 when it has none).
    """
    a = tf.cast(tf.random.stateless_normal([size, size], seed=[0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], seed=[0, 2]), dtype)

    @tf.function
    def multiply() -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(products):
            # one product per iteration, none folded away
            total += tf.cast(tf.matmul(a, b)[0, 0], tf.float32)
        return total

    float(multiply())  # trace
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        float(multiply())
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 * products / min(seconds) / 1e9


def arithmetic_limit(params: TrainParams) -> dict[str, dict[str, float]]:
    """What the machine's matrix-product rate allows for training images/s of this model,
    in float32 and in bfloat16 (the arithmetic of ``precision: bfloat16``)."""
    flops = training_flops_per_image(build_model(params))
    limits = {}
    for dtype in ("float32", "bfloat16"):
        gflops = matmul_gflops(dtype=dtype)
        limits[dtype] = {
            "matmul_gflops": round(gflops, 1),
            "training_mflop_per_image": round(flops / 1e6, 2),
            "images_per_second": round(gflops * 1e9 / flops),
        }
    return limits
