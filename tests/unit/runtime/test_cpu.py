"""digits.runtime.cpu: the CPU's facts, the oneDNN choice and the bfloat16 speed check."""

import json
import math
import os
import platform
import subprocess
import sys

import pytest
from helpers.paths import REPO_ROOT

from digits.errors import ParamsError
from digits.runtime import cpu

X86 = cpu.is_x86()


def test_onednn_is_turned_on_for_x86_unless_the_user_chose():
    environ = {}
    assert cpu.prefer_onednn(environ) == ("1" if X86 else None)
    assert environ == ({"TF_ENABLE_ONEDNN_OPTS": "1"} if X86 else {})
    users = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert cpu.prefer_onednn(users) is None and users == {"TF_ENABLE_ONEDNN_OPTS": "0"}


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", True), ("AMD64", True), ("arm64", False), ("aarch64", False)],
)
def test_x86_is_named_as_each_operating_system_names_it(machine, expected):
    assert cpu.is_x86(machine) is expected


def test_flags_and_instruction_set_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test EPYC\nflags\t\t: fpu avx avx2 fma\n"
        "processor\t: 1\nmodel name\t: Test EPYC\nflags\t\t: fpu avx avx2 fma\n"
    )
    model, flags = cpu.cpu_flags(cpuinfo)
    assert model == "Test EPYC" and flags == {"fpu", "avx", "avx2", "fma"}
    assert cpu.instruction_set(flags, "x86_64") == "AVX2"
    assert cpu.instruction_set(flags | {"avx512f", "avx512_bf16"}, "x86_64") == "AVX512_BF16"
    assert cpu.instruction_set(flags | {"avx512f", "amx_bf16"}, "x86_64") == "AMX"
    assert cpu.instruction_set(set(), "aarch64") == "aarch64"


def test_machine_line_names_cpu_instruction_set_and_onednn():
    facts = {"cpu": "Test EPYC", "instruction_set": "AVX2", "onednn": True, "cpu_count": 2}
    assert cpu.describe_machine(facts) == "on Test EPYC (AVX2, oneDNN on, 2 cores)"


def facts_in_a_stage_process(**environ) -> dict:
    """``machine_facts`` in a fresh process set up as a stage is (``digits.entry``)."""
    script = (
        "import json; from digits.entry import stage_environment; stage_environment(); "
        "from digits.runtime.cpu import machine_facts; print(json.dumps(machine_facts()))"
    )
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env={**env, **environ},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.skipif(not X86, reason="oneDNN is switched by the stages on x86 CPUs only")
def test_a_stage_runs_tensorflow_with_onednn_on_and_a_user_can_turn_it_off():
    facts = facts_in_a_stage_process()
    assert facts["onednn"] is True, facts
    assert facts["instruction_set"] != "x86-64" and facts["cpu"]
    assert facts["tensorflow"] and facts["python"] == platform.python_version()
    assert facts_in_a_stage_process(TF_ENABLE_ONEDNN_OPTS="0")["onednn"] is False


@pytest.mark.cpu_dependent
def test_bfloat16_slowdown_is_measured():
    slowdown = cpu.bfloat16_slowdown(repeats=3)
    assert math.isfinite(slowdown) and slowdown > 0


def test_slow_bfloat16_is_refused_naming_the_slowdown_and_the_ways_out(monkeypatch):
    monkeypatch.setattr(cpu, "bfloat16_slowdown", lambda: 24.6)
    with pytest.raises(ParamsError) as refused:
        cpu.check_bfloat16_speed("bfloat16", environ={})
    message = str(refused.value)
    assert "bfloat16 runs 25x slower than float32 on this CPU" in message
    assert "-S train.precision=float32" in message and "DIGITS_ALLOW_SLOW_BFLOAT16=1" in message
    cpu.check_bfloat16_speed("bfloat16", environ={"DIGITS_ALLOW_SLOW_BFLOAT16": "1"})
    cpu.check_bfloat16_speed("float32", environ={})
    monkeypatch.setattr(cpu, "bfloat16_slowdown", lambda: 2.3)  # emulated, as on AVX-512
    cpu.check_bfloat16_speed("bfloat16", environ={})
