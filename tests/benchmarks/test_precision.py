"""The CPU's bfloat16 support, and the oneDNN-capped child run of the benchmark."""

import re

import numpy as np
import pytest
from helpers.idxdata import tiny_split

from benchmarks import precision
from digits.data.arrays import save_split


def test_bfloat16_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Test EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    )
    support = precision.cpu_bfloat16_support(cpuinfo)
    assert support == {"cpu": "Test EPYC", "bfloat16_flags": ["avx512_bf16"],
                       "bfloat16_units": True}  # fmt: skip
    cpuinfo.write_text("model name\t: Old\nflags\t\t: fpu avx2\n")
    assert precision.cpu_bfloat16_support(cpuinfo)["bfloat16_units"] is False


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["AVX512_CORE", "AVX2"])
def test_capped_run_times_bfloat16_where_it_runs_at_a_usable_speed(tmp_path, isa):
    split = tiny_split(40, 1)
    save_split(tmp_path / "train.npz", split.x, split.y, split.class_names)
    figures = precision.capped_figures(isa, tmp_path, steps=2, repeats=1, batch_size=8)
    assert figures["isa"] == isa
    rates = figures["images_per_second"]
    assert all(np.isfinite(rate) and rate > 0 for rate in rates.values()), rates
    # Whether bfloat16 is timed is probed in the child (its speed against float32 under the
    # cap), not read from instruction-set names: the refusal and the figure never both appear.
    refused = figures["bfloat16_refused"]
    if refused is None:
        assert set(rates) == {"train_stage", "train_stage_bf16"}
    else:
        assert set(rates) == {"train_stage"}
        assert re.search(r"bfloat16 runs \d+x slower than float32 on this CPU", refused), refused
        assert "-S train.precision=float32" in refused
