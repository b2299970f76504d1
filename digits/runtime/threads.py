"""A stage's thread budget: ``DIGITS_THREADS``, for experiments that run side by side.

TensorFlow starts as many threads as the machine has cores, so ``dvc queue start --jobs 2``
on two cores runs two stages that fight over both. DVC passes nothing to a stage about its
neighbours, so the budget is an environment variable, read by the stages that run
TensorFlow (train, evaluate, visualize):

    DIGITS_THREADS=1 dvc queue start --jobs 2

It sets TensorFlow's own ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS``, which
TensorFlow reads when it creates its runtime, so it must run before the first TensorFlow op.
Unset or empty: TensorFlow's default, every core. It is not a param: it changes how fast a
stage runs, never what it computes.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from digits.errors import ParamsError

VARIABLE = "DIGITS_THREADS"


def apply_thread_budget(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """Give TensorFlow ``DIGITS_THREADS`` threads per pool, if set.

    Returns:
        The budget, or None when ``DIGITS_THREADS`` is unset or empty.

    Raises:
        ParamsError: ``DIGITS_THREADS`` is not a whole number of at least 1.
    """
    value = environ.get(VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ParamsError(
            f"{VARIABLE}={value!r} is not a thread count: set a whole number of at least 1 "
            f"(say {VARIABLE}=1 for `dvc queue start --jobs 2` on 2 cores), or unset it"
        )
    environ["TF_NUM_INTRAOP_THREADS"] = environ["TF_NUM_INTEROP_THREADS"] = str(int(value))
    return int(value)
