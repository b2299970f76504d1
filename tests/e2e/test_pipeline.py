"""End to end: the real dvc.yaml, run by DVC in a copy of the project on generated data."""

import contextlib
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios

import pytest
from helpers.paths import REPO_ROOT
from helpers.venvmake import venv_make
from ruamel.yaml import YAML

from digits.params import read_yaml

pytestmark = pytest.mark.slow


def test_download_and_preprocess_run_then_nothing_reruns(project):
    result = project.run("dvc", "repro", "preprocess")
    assert "Running stage 'download'" in result.stdout
    assert "Running stage 'preprocess'" in result.stdout
    summary = json.loads((project.root / "metrics" / "data.json").read_text())
    assert (summary["train_images"], summary["validation_images"]) == (100, 20)

    again = project.run("dvc", "repro", "preprocess")
    assert "Running stage" not in again.stdout
    assert "didn't change, skipping" in again.stdout
    assert (
        project.run("dvc", "status", "preprocess")
        .stdout.strip()
        .endswith("Data and pipelines are up to date.")
    )


def test_changing_the_split_reruns_preprocess_but_not_download(project):
    project.run("dvc", "repro", "preprocess")
    project.set_params({"data": {"validation_size": 30}})
    result = project.run("dvc", "repro", "preprocess")
    assert "Running stage 'preprocess'" in result.stdout
    assert "Running stage 'download'" not in result.stdout
    summary = json.loads((project.root / "metrics" / "data.json").read_text())
    assert summary["validation_images"] == 30


def test_bad_param_stops_the_stage_with_the_key_named(project):
    project.set_params({"data": {"validation_size": "many"}})
    result = project.run("dvc", "repro", "preprocess", check=False)
    assert result.returncode != 0
    assert "data.validation_size: expected an integer, got 'many'" in result.stderr


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def test_full_pipeline_then_an_experiment_reruns_only_what_changed(first_full_run, committed):
    # The session's first `dvc repro` of a fresh copy, committed; `committed` is a copy of it.
    _, printed = first_full_run
    assert stages_run(printed)[:4] == ["download", "preprocess", "train", "evaluate"]
    project = committed
    for path in ["models/model.keras", "metrics/train.json", "metrics/train_run.json",
                 "metrics/eval.json", "plots/train_history.csv", "plots/confusion.csv",
                 "plots/confusion.png", "plots/errors.png"]:  # fmt: skip
        assert (project.root / path).is_file(), path

    experiment = project.run(
        "dvc", "exp", "run", "-S", "train.fc_size=256", "-S", "train.steps=20"
    )
    assert "train" in stages_run(experiment.stdout) and "evaluate" in stages_run(experiment.stdout)
    assert not {"download", "preprocess"} & set(stages_run(experiment.stdout))

    shown = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    rows = []
    for commit in shown:
        for experiment_row in [commit] + [e for ex in commit.get("experiments") or []
                                          for e in ex["revs"]]:  # fmt: skip
            # The model size is a run fact, not a DVC metric: read from git, as committed.
            rev = experiment_row["rev"]
            if rev == "workspace":
                facts = (project.root / "metrics" / "train_run.json").read_text()
            else:
                facts = project.run("git", "show", f"{rev}:metrics/train_run.json").stdout
            rows.append((
                experiment_row["data"]["params"]["params.yaml"]["data"]["train"]["fc_size"],
                json.loads(facts)["parameters"],
            ))  # fmt: skip
    counts = dict(rows)
    assert set(counts) == {128, 256}
    assert counts[256] > counts[128]


def test_changing_only_evaluate_batch_size_reruns_only_evaluate(committed):
    committed.set_params({"evaluate": {"batch_size": 7}})
    result = committed.run("dvc", "repro")
    assert stages_run(result.stdout) == ["evaluate"]


# The DVC metrics are the headline numbers only, test set first (dvc.yaml lists evaluate
# before train); per-class scores, class counts and train's run facts (training-set scores,
# model size, timings) are files of their own. (Before: 75, then 16.)
METRIC_COLUMNS = [
    "train_images", "validation_images", "test_images",
    "accuracy", "loss", "macro_f1",
    "val_loss", "val_accuracy", "steps", "best_step", "stopped_step",
]  # fmt: skip


def test_exp_show_has_one_column_per_headline_metric(committed):
    import csv

    shown = committed.run("dvc", "exp", "show", "--csv").stdout
    header = next(csv.reader(shown.splitlines()))
    raw = YAML(typ="safe", pure=True).load((committed.root / "params.yaml").read_text())
    params = {f"{section}.{key}" for section, values in raw.items() for key in values}
    meta = {"Experiment", "rev", "typ", "Created", "parent"}
    paths = {name for name in header if (committed.root / name).exists()}  # deps
    metrics = [name for name in header if name not in meta | params | paths]
    assert metrics == METRIC_COLUMNS
    assert len(metrics) == 11


def in_terminal(project, command: list[str], columns: int) -> list[str]:
    """The lines ``command`` prints in a ``columns``-wide terminal (a pseudo-terminal: piped,
    `dvc exp show` ignores the width and prints every column), escape codes removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    # rich takes a TERM=dumb terminal for 80 columns whatever it is told.
    env = {**project.env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    process = subprocess.Popen(command, cwd=project.root, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the command has closed the terminal
        while chunk := os.read(master, 65536):
            chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=120) == 0, b"".join(chunks).decode()
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode())
    return [line.rstrip() for line in text.replace("\r", "").splitlines()]


def test_exp_show_fits_test_accuracy_and_loss_in_a_terminal(committed):
    committed.run("dvc", "exp", "run", "-n", "wide", "-S", "train.fc_size=64")
    # As the README recommends it. With a pager DVC prints the whole table (`less -S` shows
    # its left end; without `less` every line wraps); --no-pager fits it to the terminal.
    command = ["dvc", "exp", "show", "--only-changed", "--no-pager"]
    fc_sizes = {"workspace": "64", "main": "128", "[wide]": "64"}
    for columns in (120, 80):
        lines = in_terminal(committed, command, columns)
        (header,) = [line for line in lines if line.strip().startswith("Experiment")]
        names = re.split(r"\s{2,}", header.strip())
        assert names[:5] == ["Experiment", "Created", "accuracy", "loss", "macro_f1"], lines
        assert max(map(len, lines)) <= columns and names[-1] == "…"  # the width applies
        rows = [re.split(r"\s{2,}", line.strip()) for line in lines
                if line.strip().startswith(("workspace", "main", "└──"))]  # fmt: skip
        assert [row[0].split()[-1] for row in rows] == list(fc_sizes)
        for row in rows:
            values = dict(zip(names, row, strict=True))
            assert 0 <= float(values["accuracy"]) <= 1 and float(values["loss"]) > 0
            # DVC puts the params after every metric and collapses columns from the right:
            # the param that differs needs 120 columns at most (189 while train's timings,
            # model size and training-set scores were metrics).
            if columns == 120:
                assert values.get("train.fc_size") == fc_sizes[row[0].split()[-1]], lines


def test_make_exps_fits_the_experiments_in_80_columns_queued_ones_too(committed):
    """`dvc exp show` adds Created, State and Executor columns once an experiment is queued,
    and at 80 columns the params that differ no longer show: `make exps` keeps them and the
    headline metrics (test and validation accuracy)."""
    committed.run("dvc", "exp", "run", "-n", "wide", "-S", "train.fc_size=64")
    committed.run("dvc", "exp", "run", "--queue", "-n", "waiting", "-S", "train.fc_size=32")
    command = venv_make(committed.root, "--no-print-directory", "exps")
    lines = [line for line in in_terminal(committed, command, 80) if line.strip()]
    assert max(map(len, lines)) <= 80, lines
    (header,) = [line for line in lines if line.strip().startswith("Experiment")]
    names = re.split(r"\s{2,}", header.strip())
    assert names == ["Experiment", "accuracy", "val_accuracy", "train.fc_size"], lines
    rows = {
        row[0].split()[-1]: dict(zip(names, row, strict=True))
        for row in (re.split(r"\s{2,}", line.strip()) for line in lines)
        if row[0].startswith(("workspace", "main", "├──", "└──"))
    }
    fc_sizes = {"workspace": "64", "main": "128", "[wide]": "64", "[waiting]": "32"}
    assert {name: row["train.fc_size"] for name, row in rows.items()} == fc_sizes, lines
    for name in ("main", "[wide]"):
        assert 0 <= float(rows[name]["accuracy"]) <= 1, lines
        assert 0 <= float(rows[name]["val_accuracy"]) <= 1, lines
    assert rows["[waiting]"]["accuracy"] == "-"  # queued: no metrics yet


def test_make_quick_runs_the_whole_pipeline_on_few_steps_as_an_experiment(project):
    makefile = (project.root / "Makefile").read_text()
    steps = int(re.search(r"^QUICK_STEPS \?= (\d+)$", makefile, re.M).group(1))
    every = int(re.search(r"^QUICK_EVAL_EVERY \?= (\d+)$", makefile, re.M).group(1))
    # Fewer steps than the shipped params.yaml (the project copy's tiny params have fewer).
    assert steps < read_yaml(REPO_ROOT / "params.yaml")["train"]["steps"]
    result = project.run(*venv_make(project.root, "--no-print-directory", "quick"))
    assert stages_run(result.stdout)[:5] == [
        "download", "preprocess", "train", "evaluate", "visualize"
    ]  # fmt: skip
    trained = json.loads((project.root / "metrics" / "train.json").read_text())
    assert trained["steps"] == steps
    history = (project.root / "plots" / "train_history.csv").read_text().splitlines()
    assert len(history) == 1 + steps // every  # a header, then one row per evaluation
    assert "git checkout params.yaml && make repro" in result.stdout
    shown = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    assert [entry for commit in shown for entry in commit.get("experiments") or []]
