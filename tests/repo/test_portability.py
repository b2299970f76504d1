"""The tests whose results depend on the CPU's kernels hold on other CPUs too.

The machine under test is one CPU; these runs stand in for two others: oneDNN capped at AVX2
(an AVX2-only CPU: no AVX-512, no bfloat16 units) and oneDNN off (TensorFlow's Eigen
kernels, its own default on such a CPU). Each runs the ``cpu_dependent`` tests in a child
pytest, since both switches are read once, when TensorFlow loads.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT, TESTS


def files_with_cpu_dependent_tests() -> list[str]:
    """The test files that mark a test ``cpu_dependent`` (collecting only those is faster)."""
    return sorted(
        str(path) for path in TESTS.rglob("test_*.py")
        if path.name != Path(__file__).name and "@pytest.mark.cpu_dependent" in path.read_text()
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "environ",
    [{"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}],
    ids=["onednn-capped-at-avx2", "onednn-off"],
)
def test_cpu_dependent_tests_pass_on_other_kernels(environ):
    env = {**os.environ, **environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cpu_dependent",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "deselected" in summary, summary
