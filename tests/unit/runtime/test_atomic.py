import errno
import json
import os
import signal
import time

import pytest

from digits.errors import PipelineError, Terminated
from digits.runtime import atomic, stopping
from digits.runtime.atomic import Outputs, atomic_directory


def test_atomic_directory_replaces_the_whole_folder(tmp_path):
    final = tmp_path / "plots" / "pictures"
    final.mkdir(parents=True)
    (final / "stale.png").write_text("from an earlier run")

    with atomic_directory(final) as folder:
        assert folder.parent == final.parent and folder != final
        (folder / "new.png").write_text("new")
        assert (final / "stale.png").exists(), "the old folder stays until the block succeeds"

    assert [path.name for path in final.iterdir()] == ["new.png"]
    assert [path.name for path in final.parent.iterdir()] == ["pictures"], "no leftovers"


def test_atomic_directory_keeps_the_old_folder_when_the_block_fails(tmp_path):
    final = tmp_path / "pictures"
    final.mkdir()
    (final / "old.png").write_text("old")

    with pytest.raises(RuntimeError), atomic_directory(final) as folder:
        (folder / "half.png").write_text("half")
        raise RuntimeError("crash while drawing")

    assert [path.name for path in final.iterdir()] == ["old.png"]
    assert [path.name for path in tmp_path.iterdir()] == ["pictures"], "no leftovers"


def test_atomic_directory_creates_the_parent_and_has_plain_mkdir_permissions(tmp_path):
    final = tmp_path / "a" / "b"
    with atomic_directory(final) as folder:
        (folder / "x.txt").write_text("x")
    assert (final / "x.txt").read_text() == "x"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert final.stat().st_mode == plain.stat().st_mode, "not mkdtemp's private 0700"


def previous_outputs(root):
    """Three outputs of one stage from an earlier run: two files and a folder."""
    (root / "models").mkdir()
    (root / "models" / "model.keras").write_text("old model")
    (root / "models" / "run.json").write_text("old run")
    (root / "pictures").mkdir()
    (root / "pictures" / "old.png").write_text("old picture")


def contents(root, hidden: bool = True) -> dict[str, str]:
    """Every file under ``root`` (``hidden=False``: under final names only) and its text."""
    found = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and (hidden or not any(part.startswith(".") for part in parts)):
            found["/".join(parts)] = path.read_text()
    return found


def stage_new_outputs(outputs) -> None:
    with outputs.file("models/model.keras") as temporary:
        temporary.write_text("new model")
    outputs.write_json("models/run.json", {"run_id": "new"})
    with outputs.directory("pictures") as folder:
        (folder / "new.png").write_text("new picture")


OLD = {"models/model.keras": "old model", "models/run.json": "old run",
       "pictures/old.png": "old picture"}  # fmt: skip
NEW = {"models/model.keras": "new model", "models/run.json": '{\n  "run_id": "new"\n}\n',
       "pictures/new.png": "new picture"}  # fmt: skip


def test_outputs_change_together_when_the_block_succeeds(tmp_path):
    previous_outputs(tmp_path)
    with Outputs() as outputs:
        stage_new_outputs(outputs)
        assert contents(tmp_path, hidden=False) == OLD, "nothing under a final name yet"
        assert outputs.staged("models/model.keras").read_text() == "new model"
    assert contents(tmp_path) == NEW, "and no leftovers"


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt, Terminated])
def test_outputs_change_not_at_all_when_the_block_fails(tmp_path, stop):
    previous_outputs(tmp_path)
    with pytest.raises(stop), Outputs() as outputs:
        stage_new_outputs(outputs)
        raise stop()  # the last fallible call of a stage (logging to MLflow, say) fails
    assert contents(tmp_path) == OLD


def test_a_full_disk_names_the_output_and_replaces_nothing(tmp_path):
    previous_outputs(tmp_path)
    with pytest.raises(PipelineError) as raised, Outputs() as outputs:
        outputs.write_json("models/run.json", {"run_id": "new"})
        with outputs.file("models/model.keras"):
            raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it
    message = str(raised.value)
    assert message.startswith("cannot write models/model.keras (in ")
    assert "No space left on device; free some space there" in message
    assert "no output of this stage was replaced" in message
    assert contents(tmp_path) == OLD


def test_a_rename_that_fails_half_way_is_undone(tmp_path, monkeypatch):
    previous_outputs(tmp_path)
    real_place = atomic._place
    placed = []

    def place_then_fail(temporary, final):
        if len(placed) == 2:
            raise OSError(errno.EACCES, "Permission denied")
        real_place(temporary, final)
        placed.append(final)

    monkeypatch.setattr(atomic, "_place", place_then_fail)
    refused = "cannot write pictures: Permission denied"
    with pytest.raises(PipelineError, match=refused), Outputs() as outputs:
        stage_new_outputs(outputs)
    assert len(placed) == 2
    assert contents(tmp_path) == OLD


def test_a_signal_during_the_swap_waits_until_every_output_is_in_place(tmp_path, monkeypatch):
    previous_outputs(tmp_path)
    monkeypatch.setattr(stopping._Process, "replaced", [])
    monkeypatch.setattr(stopping._Process, "stop", None)  # the handler remembers the stop
    previous = signal.signal(signal.SIGTERM, stopping._raise_terminated)
    real_place = atomic._place

    def place_and_get_terminated(temporary, final):
        os.kill(os.getpid(), signal.SIGTERM)  # a CI runner's SIGTERM, mid-swap
        time.sleep(0.01)
        real_place(temporary, final)

    monkeypatch.setattr(atomic, "_place", place_and_get_terminated)
    try:
        with pytest.raises(Terminated), Outputs() as outputs:
            stage_new_outputs(outputs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert contents(tmp_path) == NEW
    message = stopping.stop_message(signal.SIGTERM)
    assert message.startswith("terminated after replacing models/model.keras, models/run.json")
    assert "dvc.lock does not record them" in message


def test_with_the_dvc_parent_gone_nothing_is_replaced(tmp_path, monkeypatch):
    previous_outputs(tmp_path)
    monkeypatch.setattr(stopping._Process, "parent", os.getppid() + 1)  # re-parented
    gone = "the dvc process that started this stage is gone"
    with pytest.raises(PipelineError, match=gone), Outputs() as outputs:
        stage_new_outputs(outputs)
    assert contents(tmp_path) == OLD


def test_an_interrupted_stage_says_nothing_was_replaced(monkeypatch):
    monkeypatch.setattr(stopping._Process, "replaced", [])
    assert stopping.stop_message(signal.SIGHUP) == (
        "hung up: nothing was replaced; the previous outputs are in place"
    )


def test_nested_blocks_of_one_outputs_swap_once(tmp_path, monkeypatch):
    """digits.tracking.stage_run enters the outputs it is given; a stage's own block around it is a
    no-op at its end."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.json").write_text("old")
    with Outputs() as outputs:
        with outputs:
            outputs.write_json("a.json", {"new": 1})
        assert json.loads((tmp_path / "a.json").read_text()) == {"new": 1}
        assert outputs.swapped
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.json"]
