"""DIGITS_THREADS: the thread budget of a stage that runs TensorFlow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT

from digits.errors import ParamsError
from digits.runtime.threads import apply_thread_budget


def test_budget_sets_both_tensorflow_pools():
    environ = {"DIGITS_THREADS": " 3 "}
    assert apply_thread_budget(environ) == 3
    assert environ["TF_NUM_INTRAOP_THREADS"] == environ["TF_NUM_INTEROP_THREADS"] == "3"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_leaves_tensorflow_alone(value):
    environ = {} if value is None else {"DIGITS_THREADS": value}
    assert apply_thread_budget(environ) is None
    assert "TF_NUM_INTRAOP_THREADS" not in environ


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_budget_is_one_clear_error(value):
    with pytest.raises(ParamsError, match=rf"DIGITS_THREADS='{value}' is not a thread count"):
        apply_thread_budget({"DIGITS_THREADS": value})


def thread_count(budget: str) -> int:
    """Threads of a fresh process that applied ``budget`` and ran one TensorFlow op."""
    code = (
        "import os\n"
        "from digits.runtime.threads import apply_thread_budget\n"
        "apply_thread_budget()\n"
        "import tensorflow as tf\n"
        "tf.linalg.matmul(tf.ones([64, 64]), tf.ones([64, 64])).numpy()\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = {**os.environ, "DIGITS_THREADS": budget, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_tensorflow_starts_the_threads_the_budget_allows():
    # Two pools (intra-op and inter-op) of the budget's size each.
    assert thread_count("9") - thread_count("1") >= 2 * (9 - 1)
