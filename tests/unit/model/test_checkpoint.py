import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.idxdata import CLASS_NAMES, tiny_split
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from digits.data.arrays import save_split
from digits.model import checkpoint
from digits.params import load_params
from digits.params import replace as params_replace
from stages import train as train_stage


@pytest.fixture
def train_params():
    return load_params(REPO_ROOT / "params.yaml", sections=("train",)).train


def make_state(step: int = 20, best: bool = False) -> checkpoint.TrainingState:
    rng = np.random.default_rng(step)
    variables = [rng.normal(size=(5, 5, 1, 4)).astype(np.float32), np.array([3, 40])]
    return checkpoint.TrainingState(
        step=step,
        rows=[{"step": step, "train_loss": 1.5, "val_loss": 1.25, "val_accuracy": 0.5}],
        train_seconds=1.5,
        elapsed_seconds=2.5,
        variables=variables,
        optimizer_variables=[np.array(step, np.int64), rng.normal(size=(4,)).astype(np.float32)],
        best_variables=[value + 1 for value in variables] if best else None,
    )


def data_and_code(folder: Path) -> tuple[list[Path], list[Path]]:
    data = [folder / "train.npz", folder / "validation.npz"]
    for path, content in zip(data, (b"train", b"validation"), strict=True):
        path.write_bytes(content)
    code = folder / "training.py"
    code.write_text("STEPS = 1\n")
    return data, [code]


def test_the_key_changes_with_params_data_and_code(tmp_path, train_params):
    data, code = data_and_code(tmp_path)
    key = checkpoint.run_key(train_params, data, code)

    assert checkpoint.run_key(train_params, data, code) == key
    assert checkpoint.run_key(params_replace(train_params, fc_size=129), data, code) != key
    assert checkpoint.run_key(params_replace(train_params, patience=2), data, code) != key
    data[1].write_bytes(b"other validation")
    assert checkpoint.run_key(train_params, data, code) != key
    data[1].write_bytes(b"validation")
    code[0].write_text("STEPS = 2\n")
    assert checkpoint.run_key(train_params, data, code) != key


def test_the_stage_keys_its_checkpoint_by_the_code_its_dvc_deps_list():
    found = checkpoint.code_files(train_stage.__file__)
    files = {path.relative_to(REPO_ROOT).as_posix() for path in found}
    pipeline = YAML(typ="safe", pure=True).load((REPO_ROOT / "dvc.yaml").read_text())
    stage = pipeline["stages"]["train"]
    code_deps = {dep for dep in stage["deps"] if dep.endswith(".py")}
    assert code_deps == files
    assert "digits/model/checkpoint.py" in code_deps


@pytest.mark.parametrize("best", [False, True])
def test_save_then_load_gives_back_every_array_and_the_record(tmp_path, best):
    path = tmp_path / "models" / "checkpoint.npz"
    state = make_state(best=best)

    size = checkpoint.save(path, "key-1", state, run_id="abc")
    loaded = checkpoint.load(path, "key-1")

    assert size == path.stat().st_size
    assert loaded.run_id == "abc"
    assert (loaded.state.step, loaded.state.rows) == (state.step, state.rows)
    assert (loaded.state.train_seconds, loaded.state.elapsed_seconds) == (1.5, 2.5)
    for group in ("variables", "optimizer_variables"):
        for a, b in zip(getattr(state, group), getattr(loaded.state, group), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    assert (loaded.state.best_variables is None) == (not best)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.npz"], "no temporary file"


def test_no_checkpoint_is_none_and_leftovers_of_a_killed_save_are_removed(tmp_path):
    leftover = tmp_path / ".checkpoint.k2j4.tmp.npz"
    leftover.write_bytes(b"half a file")
    assert checkpoint.load(tmp_path / "checkpoint.npz", "key") is None
    assert not leftover.exists()


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, "key-1", make_state(), run_id=None)
    with pytest.raises(checkpoint.UnusableCheckpoint, match="belongs to another run"):
        checkpoint.load(path, "key-2")


def flip_a_byte_of_an_array(path: Path) -> None:
    """Change one byte inside the stored data of the first variable (not its zip header)."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("variables/0000.npy")
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes plus name and extra field; the .npy header follows.
    header = member.header_offset
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    start = header + 30 + name_length + 200
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_array_with_its_crc(path: Path) -> None:
    """Replace one array by a valid one of the same shape: only the digest can tell."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["variables/0000"] = arrays["variables/0000"] + 1
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:1000]), "is damaged"),
        (lambda path: path.write_bytes(b""), "is damaged"),
        (flip_a_byte_of_an_array, "is damaged"),
        (rewrite_array_with_its_crc, "do not match their digest"),
    ],
    ids=["truncated", "empty", "flipped-byte", "consistent-zip-wrong-array"],
)
def test_a_damaged_checkpoint_is_refused(tmp_path, damage, message):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, "key-1", make_state(), run_id=None)
    damage(path)
    with pytest.raises(checkpoint.UnusableCheckpoint, match=message):
        checkpoint.load(path, "key-1")


def stage_project(folder: Path) -> tuple[list[str], dict[str, Path]]:
    """Tiny splits and params for the train stage; returns its argv and output paths."""
    data = folder / "processed"
    for name, count, seed in [("train", 40, 1), ("validation", 10, 2)]:
        split = tiny_split(count, seed)
        save_split(data / f"{name}.npz", split.x, split.y, CLASS_NAMES)
    raw = YAML(typ="safe", pure=True).load((REPO_ROOT / "params.yaml").read_text())
    raw["train"].update(steps=30, eval_every=10, batch_size=8, conv2_filters=4, dropout=0.25)
    raw["tracking"]["enabled"] = False  # MLflow: tests/e2e/test_resume_pipeline.py
    with (folder / "params.yaml").open("w") as stream:
        YAML(typ="safe", pure=True).dump(raw, stream)
    out = {
        "model": folder / "models" / "model.keras",
        "metrics": folder / "metrics" / "train.json",
        "run-facts": folder / "metrics" / "train_run.json",
        "history": folder / "plots" / "history.csv",
        "run": folder / "models" / "mlflow_run.json",
        "checkpoint": folder / "models" / "checkpoint.npz",
    }
    argv = ["--params", str(folder / "params.yaml"), "--data", str(data)]
    return argv + [item for key, path in out.items() for item in (f"--{key}", str(path))], out


class Interrupted(Exception):
    """Stands for Ctrl-C after the second checkpoint."""


def test_the_stage_resumes_an_interrupted_run_and_deletes_the_checkpoint(
    tmp_path, monkeypatch, capsys
):
    argv, out = stage_project(tmp_path)
    train_stage.main(argv)
    uninterrupted = pd.read_csv(out["history"])
    assert not out["checkpoint"].exists(), "deleted when the stage completes"

    real_save = checkpoint.save

    def save_then_stop(path, key, state, run_id):
        real_save(path, key, state, run_id)
        if state.step == 20:
            raise Interrupted

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(Interrupted):
        train_stage.main(argv)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert out["checkpoint"].exists()
    capsys.readouterr()

    train_stage.main(argv)

    printed = capsys.readouterr().out
    assert f"resuming from step 20 ({out['checkpoint']})" in printed
    assert [line.split("/")[0] for line in printed.splitlines() if line.startswith("step")] == [
        "step 30"
    ]
    pd.testing.assert_frame_equal(
        pd.read_csv(out["history"]).drop(columns="seconds"),
        uninterrupted.drop(columns="seconds"),
    )
    assert not out["checkpoint"].exists()
    assert json.loads(out["metrics"].read_text())["stopped_step"] == 30


def test_the_stage_reports_a_damaged_checkpoint_and_trains_from_step_0(tmp_path, capsys):
    argv, out = stage_project(tmp_path)
    out["checkpoint"].parent.mkdir(parents=True)
    out["checkpoint"].write_bytes(b"PK\x03\x04 not a checkpoint")

    train_stage.main(argv)

    captured = capsys.readouterr()
    assert f"warning: {out['checkpoint']} is damaged" in captured.err
    assert "training starts from step 0" in captured.err
    assert "resuming" not in captured.out
    assert list(pd.read_csv(out["history"])["step"]) == [10, 20, 30]
    assert not out["checkpoint"].exists()
