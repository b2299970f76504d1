"""The CPU a stage runs on: what it is, the oneDNN choice made for it, and bfloat16's cost.

TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX512-VNNI,
AVX512-BF16 or AMX; everywhere else on x86 (every AVX2-only CPU) it runs its Eigen kernels,
which train this project's network at about half the speed. ``prefer_onednn`` turns oneDNN on
for every x86 CPU before TensorFlow loads, unless the user set ``TF_ENABLE_ONEDNN_OPTS``
themselves. It changes how a run rounds (oneDNN and Eigen sum in different orders), never
whether two runs on one machine agree: determinism is TensorFlow's op determinism either way
(``digits.model.training.seed_everything``).

What a run was computed with is recorded beside it (``machine_facts``: run facts and MLflow
tags), so that two runs' speeds and last digits can be explained.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
ALLOW_SLOW_BFLOAT16 = "DIGITS_ALLOW_SLOW_BFLOAT16"
# Flags of x86 CPUs, best first: the instruction set named in a run's facts.
ISA_FLAGS = (
    ("amx_bf16", "AMX"),
    ("avx512_bf16", "AVX512_BF16"),
    ("avx512_vnni", "AVX512_VNNI"),
    ("avx512f", "AVX512"),
    ("avx2", "AVX2"),
    ("avx", "AVX"),
)
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# bfloat16 training slower than float32 by more than this is refused (digits.model.training): on a
# CPU without bfloat16 kernels TensorFlow falls back to reference code many times slower.
MAX_BFLOAT16_SLOWDOWN = 3.0


def is_x86(machine: str | None = None) -> bool:
    """Whether this is an x86-64 CPU (``platform.machine()`` names it per operating system)."""
    return (machine or platform.machine()).lower() in {"x86_64", "amd64"}


def prefer_onednn(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Turn TensorFlow's oneDNN kernels on for an x86 CPU, unless the user chose.

    Must run before TensorFlow is imported: it reads the variable once, as it loads.

    Returns:
        The value set, or None where nothing was set (the user's own value, or not x86).
    """
    if environ.get(ONEDNN_VARIABLE, "").strip() or not is_x86():
        return None
    environ[ONEDNN_VARIABLE] = "1"
    return "1"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The CPU's model name and feature flags (Linux; elsewhere the name only)."""
    model, flags = "", set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in {"flags", "Features"} and not flags:
                flags = set(value.split())
    if not model and sys.platform == "darwin":
        try:
            model = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            model = ""
    return model or platform.processor() or platform.machine() or "unknown", flags


def instruction_set(flags: set[str], machine: str | None = None) -> str:
    """The best instruction set named by ``flags`` (x86), else the machine's architecture."""
    if not is_x86(machine):
        return machine or platform.machine() or "unknown"
    return next((name for flag, name in ISA_FLAGS if flag in flags), "x86-64")


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels (None: TensorFlow does not say)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without this private switch: report nothing
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def machine_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str | int | bool | None]:
    """What explains a run's speed and its last digits: CPU, oneDNN, threads, versions.

    Call it after TensorFlow is imported (the oneDNN state is TensorFlow's).
    """
    import tensorflow as tf

    model, flags = cpu_flags(cpuinfo)
    return {
        "cpu": model,
        "cpu_count": os.cpu_count() or 0,
        "instruction_set": instruction_set(flags),
        "bfloat16_units": any(flag in flags for flag in BFLOAT16_FLAGS),
        "onednn": onednn_enabled(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or "all",
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "all",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "all",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def describe_machine(facts: dict) -> str:
    """One line for a stage's log: ``on AMD EPYC (AVX2, oneDNN on, 2 cores)``."""
    onednn = {True: "on", False: "off", None: "unknown"}[facts["onednn"]]
    return (
        f"on {facts['cpu']} ({facts['instruction_set']}, oneDNN {onednn}, "
        f"{facts['cpu_count']} cores)"
    )


def bfloat16_slowdown(repeats: int = 5) -> float:
    """How many times longer a training step's convolution gradients take in bfloat16 than in
    float32 on this CPU.

    The gradients of the tutorial's second convolution (to its input and its kernel) on a
    batch of 4 images, the median of ``repeats`` timings after a warm-up: where the fallback
    is slow (forward convolutions barely differ), in well under a second.
    """
    import tensorflow as tf

    images_shape, kernel_shape = [4, 14, 14, 16], [5, 5, 16, 36]

    def median_seconds(dtype: tf.DType) -> float:
        def uniform(shape: list[int], seed: int) -> tf.Tensor:
            return tf.cast(tf.random.stateless_uniform(shape, (0, seed)), dtype)

        images, kernel = uniform(images_shape, 1), uniform(kernel_shape, 2)
        upstream = uniform([*images_shape[:3], kernel_shape[3]], 3)
        strides = [1, 1, 1, 1]

        @tf.function
        def gradients():
            return (
                tf.compat.v1.nn.conv2d_backprop_filter(
                    images, kernel_shape, upstream, strides, "SAME"
                ),
                tf.compat.v1.nn.conv2d_backprop_input(
                    images_shape, kernel, upstream, strides, "SAME"
                ),
            )

        timings = []
        for _ in range(repeats + 1):  # the first traces and warms up
            started = time.perf_counter()
            for gradient in gradients():
                gradient.numpy()
            timings.append(time.perf_counter() - started)
        return sorted(timings[1:])[repeats // 2]

    return median_seconds(tf.bfloat16) / median_seconds(tf.float32)


def check_bfloat16_speed(precision: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """Refuse ``bfloat16`` where this CPU runs it more than ``MAX_BFLOAT16_SLOWDOWN`` times
    slower than float32, unless ``DIGITS_ALLOW_SLOW_BFLOAT16=1``.

    Without AVX-512, oneDNN has no bfloat16 kernels and TensorFlow falls back to reference
    code: a run that takes minutes in float32 would take hours, with nothing said. Refused
    rather than warned about, since a warning scrolls past at the start of a run that then
    takes hours; the variable is there for whoever wants that run anyway (to compare the
    rounding, say).

    Raises:
        ParamsError: bfloat16 is that much slower here.
    """
    from digits.errors import ParamsError

    if precision != "bfloat16" or environ.get(ALLOW_SLOW_BFLOAT16) == "1":
        return
    slowdown = bfloat16_slowdown()
    if slowdown > MAX_BFLOAT16_SLOWDOWN:
        model, flags = cpu_flags()
        raise ParamsError(
            f"train.precision: bfloat16 runs {slowdown:.0f}x slower than float32 on this CPU "
            f"({model}, {instruction_set(flags)}: no bfloat16 kernels); use "
            f"-S train.precision=float32, or set {ALLOW_SLOW_BFLOAT16}=1 to run it anyway"
        )
