"""The train stage against PyTorch eager on this CPU: full instruction set, capped, oneDNN off.

Each configuration runs in its own child process (this module's ``main``), since TensorFlow
and oneDNN read their switches once, as they load:

- ``full``: the train stage as it runs here (``digits.runtime.cpu.prefer_onednn``: oneDNN on);
- ``avx2``: oneDNN capped at AVX2 (``ONEDNN_MAX_CPU_ISA``, and PyTorch's own kernels at
  ``ATEN_CPU_CAPABILITY=avx2``), as on an AVX2-only CPU;
- ``tf_default``: capped at AVX2 with oneDNN off, TensorFlow's own default on an AVX2-only
  CPU, which the stages override.

In each child the two contenders train the same network (the ``cnn`` of params.yaml's
``train`` section: convolutions, pooling, ReLU, dense, float32) on the same images, batches
and optimizer, in interleaved rounds (``benchmarks.harness``). PyTorch is the CPU build, an
optional contender (``make bench`` installs it): without it the child times the stage alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGURATIONS = {
    "full": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "tf_default": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    },
}


def torch_trainer(params, train_split):
    """PyTorch eager: the same network, Adam, loss and batch order as the train stage.

    PyTorch's own layout (channels first); ``torch.compile`` is left out (no faster than eager
    for this network on a CPU, and it needs a C++ compiler at run time).
    """
    import torch
    from torch import nn

    from digits.model import training

    if params.model != "cnn" or params.optimizer != "adam" or params.precision != "float32":
        raise ValueError("the PyTorch contender trains the float32 cnn with Adam only")
    torch.manual_seed(params.seed)
    padding = params.kernel_size // 2 if params.padding == "same" else 0
    side = 28
    for _ in range(2):
        side = (side + 2 * padding - params.kernel_size + 1 + 1) // 2
    model = nn.Sequential(
        nn.Conv2d(1, params.conv1_filters, params.kernel_size, padding=padding),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.ReLU(),
        nn.Conv2d(params.conv1_filters, params.conv2_filters, params.kernel_size, padding=padding),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(params.conv2_filters * side * side, params.fc_size),
        nn.ReLU(),
        nn.Linear(params.fc_size, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.from_numpy(train_split.x).permute(0, 3, 1, 2).contiguous()  # (n, 1, 28, 28)
    labels = torch.from_numpy(train_split.y.argmax(axis=1))
    count = len(train_split.x)

    def run(steps: int) -> None:
        schedule = training.batch_schedule(count, params.batch_size, steps, params.seed)
        for batch in torch.from_numpy(schedule).long():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        loss.item()  # wait for the result

    return run


def configuration_figures(
    configuration: str, data: Path, steps: int, repeats: int, batch_size: int
) -> dict:
    """One configuration's images/s (``harness.summarise``), from its own child process."""
    command = [sys.executable, "-m", "benchmarks.portability", "--data", str(data)]
    command += ["--steps", str(steps), "--repeats", str(repeats), "--batch-size", str(batch_size)]
    env = {**os.environ, **CONFIGURATIONS[configuration], "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return {"configuration": configuration, **json.loads(result.stdout.splitlines()[-1])}


def portability_figures(data: Path, steps: int, repeats: int, batch_size: int) -> dict:
    """Every configuration's figures, by name."""
    return {
        name: configuration_figures(name, data, steps, repeats, batch_size)
        for name in CONFIGURATIONS
    }


def main(argv: list[str] | None = None) -> None:
    """Time the train stage and PyTorch eager here; print the summary as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder holding train.npz")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    from digits.runtime.cpu import prefer_onednn

    prefer_onednn()  # as the stages do (a value set by the configuration wins)
    from benchmarks.contenders import project_trainer
    from benchmarks.harness import round_rates, summarise
    from digits.data.arrays import load_split
    from digits.params import load_params, replace
    from digits.runtime.cpu import machine_facts

    params = load_params(args.params, sections=("train",)).train
    params = replace(params, batch_size=args.batch_size, precision="float32")
    split = load_split(args.data / "train.npz")
    runners = {"train_stage": project_trainer(params, split)}
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        runners["pytorch_eager"] = torch_trainer(params, split)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    rounds = round_rates(runners, args.steps, args.repeats, params.batch_size)
    machine = machine_facts()
    print(json.dumps({**summarise(rounds, "train_stage"), "machine": machine,
                      "torch": torch_version}))  # fmt: skip


if __name__ == "__main__":
    main()
