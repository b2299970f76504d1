"""Precision on this CPU: its bfloat16 units, and float32 against bfloat16 with them hidden.

oneDNN's ``ONEDNN_MAX_CPU_ISA`` caps the instruction set it uses; it is read once, when
oneDNN starts, so each capped measurement runs in a child process (this module's ``main``):
``AVX512_CORE`` keeps AVX-512 but hides AVX512-BF16 and AMX, as on a CPU without them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from digits.runtime.cpu import cpu_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_bfloat16_support(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model name and which of its flags give bfloat16 arithmetic in hardware."""
    model, flags = cpu_flags(cpuinfo)
    present = [flag for flag in BF16_FLAGS if flag in flags]
    return {"cpu": model, "bfloat16_flags": present, "bfloat16_units": bool(present)}


def capped_figures(isa: str, data: Path, steps: int, repeats: int, batch_size: int) -> dict:
    """The train stage's images/s in float32 and bfloat16 with oneDNN capped at ``isa``.

    Args:
        isa: An ``ONEDNN_MAX_CPU_ISA`` value (``AVX512_CORE``, ``AVX2``).
        data: A folder holding ``train.npz``.
    """
    command = [sys.executable, "-m", "benchmarks.precision", "--data", str(data)]
    command += ["--steps", str(steps), "--repeats", str(repeats), "--batch-size", str(batch_size)]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return {"isa": isa, **json.loads(result.stdout.splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    """Time the train stage in both precisions; print the summary as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    from benchmarks.contenders import project_trainer
    from benchmarks.harness import round_rates, summarise
    from digits.data.arrays import load_split
    from digits.params import load_params, replace

    params = load_params(args.params, sections=("train",)).train
    params = replace(params, batch_size=args.batch_size)
    from digits.errors import ParamsError
    from digits.runtime.cpu import check_bfloat16_speed

    split = load_split(args.data / "train.npz")
    runners = {"train_stage": project_trainer(params, split)}
    try:
        check_bfloat16_speed("bfloat16")
        runners["train_stage_bf16"] = project_trainer(replace(params, precision="bfloat16"), split)
        refused = None
    except ParamsError as error:
        refused = str(error)
    rounds = round_rates(runners, args.steps, args.repeats, params.batch_size)
    print(json.dumps({**summarise(rounds, "train_stage"), "bfloat16_refused": refused}))


if __name__ == "__main__":
    main()
