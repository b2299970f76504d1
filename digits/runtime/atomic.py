"""Atomic outputs: every output of a stage is written beside its final name, then all of
them are swapped in together.

A crash, Ctrl-C, SIGTERM or a full disk never leaves a half-written file under a final name,
nor a mix of new and old outputs of one stage (a new model with the previous run file), so a
later stage, DVC or a user can never read one. ``Outputs`` is the transaction; the helpers
below it are transactions of one output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from digits.errors import DISK_FULL, PipelineError, write_error
from digits.runtime.stopping import note_replaced, parent_gone, raise_if_stopped, signals_deferred


class Outputs:
    """The outputs of one stage, staged under temporary names and swapped in at the end.

    Use it as a context manager and stage each output inside it::

        with Outputs() as outputs:
            with outputs.file("models/model.keras") as temporary:
                model.save(temporary)
            outputs.write_json("metrics/train.json", metrics)
            ...  # every other fallible call: logging the staged files, the run file

    When the block succeeds, the outputs replace the previous ones in one short step in
    which SIGINT, SIGTERM and SIGHUP wait; a stop or an error before it replaces nothing, and
    a rename that fails half-way is undone. Temporary names keep the final suffix, so
    libraries that pick a format from it (Keras, Matplotlib, NumPy) still do the right thing.
    Blocks may nest (``digits.tracking.stage_run`` enters the outputs it is given): the inner
    one's end swaps, the outer one finds nothing left to do.
    """

    def __init__(self, scratch: bool = False) -> None:
        """``scratch``: not stage outputs (a checkpoint), so a stop does not list them."""
        self._staged: dict[Path, Path] = {}  # final name -> temporary name beside it
        self._scratch = scratch
        self.swapped = False  # every staged output is in place (an MLflow run may end FINISHED)

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self._flush()
        except BaseException:
            with signals_deferred():
                self._discard()
            raise
        # A signal during the renames or the clean-up after them waits until both are done.
        with signals_deferred():
            try:
                if kind is None:
                    self._swap()
            finally:
                self._discard()

    @contextlib.contextmanager
    def file(self, path: str | os.PathLike[str]) -> Iterator[Path]:
        """Yield a temporary file to write the output ``path`` into.

        Raises:
            PipelineError: ``path`` is outside the workspace, or the disk is full.
        """
        final = self._add(path)
        handle, name = tempfile.mkstemp(
            dir=final.parent, prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}"
        )
        os.close(handle)
        self._staged[final] = Path(name)
        Path(name).chmod(0o666 & ~_umask())  # mkstemp creates 0600; as a plain open() would
        with _naming(final):
            yield Path(name)

    @contextlib.contextmanager
    def directory(self, path: str | os.PathLike[str]) -> Iterator[Path]:
        """Yield an empty temporary folder that replaces the folder ``path`` whole.

        Under the final name there is only ever a complete folder, never a mix of old and new
        files.
        """
        final = self._add(path)
        name = tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        self._staged[final] = Path(name)
        Path(name).chmod(0o777 & ~_umask())  # mkdtemp creates 0700
        with _naming(final):
            yield Path(name)

    def write_json(self, path: str | os.PathLike[str], data: Any) -> None:
        """Stage ``data`` as indented JSON for the output ``path``."""
        with self.file(path) as temporary, temporary.open("w") as stream:
            json.dump(data, stream, indent=2, sort_keys=False)
            stream.write("\n")

    def staged(self, path: str | os.PathLike[str]) -> Path:
        """Where the output ``path`` is staged until the swap (``path`` if it is not staged)."""
        return self._staged.get(Path(path), Path(path))

    def _add(self, path: str | os.PathLike[str]) -> Path:
        final = inside_workspace(path)
        if final in self._staged:
            raise ValueError(f"{final} is staged twice")
        with _naming(final):
            final.parent.mkdir(parents=True, exist_ok=True)
        return final

    def _flush(self) -> None:
        """fsync every staged file, so that a full disk shows before the swap."""
        for final, temporary in self._staged.items():
            with _naming(final):
                _flush(temporary)

    def _swap(self) -> None:
        """Rename every staged output into place; undo them all if one fails."""
        raise_if_stopped()
        if parent_gone():
            raise PipelineError(
                "the dvc process that started this stage is gone; nothing was replaced "
                "(dvc.lock would not record it)"
            )
        done: list[Path] = []
        try:
            for final, temporary in self._staged.items():
                _place(temporary, final)
                done.append(final)
        except OSError as error:
            for placed in reversed(done):
                _restore(self._staged[placed], placed)
            raise write_error(final, error) from None
        self.swapped = True
        if not self._scratch:
            note_replaced(list(self._staged))

    def _discard(self) -> None:
        """Remove what is left of the staged outputs and the backups of the previous ones."""
        for temporary in self._staged.values():
            _remove(temporary)
            _remove(_backup(temporary))
        self._staged.clear()  # the transaction is over: a block around this one finds none


def _place(temporary: Path, final: Path) -> None:
    """Move ``temporary`` to ``final``, keeping the previous ``final`` as its backup."""
    backup = _backup(temporary)
    exists = final.exists() or final.is_symlink()
    if temporary.is_dir():
        if exists:
            final.rename(backup)
        temporary.rename(final)
        return
    if exists:
        os.link(final, backup, follow_symlinks=False)
    temporary.replace(final)  # a file is never missing under its final name


def _restore(temporary: Path, final: Path) -> None:
    """Undo ``_place``: the previous output back under ``final``, the new one removed."""
    backup = _backup(temporary)
    if backup.exists() or backup.is_symlink():
        if final.is_dir() and not final.is_symlink():
            final.rename(temporary)
        backup.replace(final)
    else:
        _remove(final)


def _backup(temporary: Path) -> Path:
    return temporary.with_name(f"{temporary.name}.old")


def _flush(path: Path) -> None:
    """fsync a file, or every file in a folder, so a full disk shows before the swap."""
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with file.open("rb+") as stream:
            os.fsync(stream.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def _naming(final: Path) -> Iterator[None]:
    """Turn a full disk met while writing ``final`` into one line that names it."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise write_error(final, error, f"in {final.parent.resolve()}/") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], scratch: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place if the block succeeds.

    ``scratch``: the file is not a stage output (a checkpoint).

    Raises:
        PipelineError: ``path`` lies outside the workspace, or the disk is full.
    """
    with Outputs(scratch) as outputs, outputs.file(path) as temporary:
        yield temporary


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` whole on success."""
    with Outputs() as outputs, outputs.directory(path) as temporary:
        yield temporary


def inside_workspace(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it stays inside the working directory, else raise PipelineError.

    ``..`` is resolved, symbolic links are not: a ``data/`` folder linked to another disk is
    still part of the workspace. The working directory is the project root (DVC sets it).
    """
    workspace = Path.cwd()
    absolute = Path(os.path.abspath(path))  # noqa: PTH100 - resolve() would follow links
    if not absolute.is_relative_to(workspace):
        raise PipelineError(
            f"refusing to write {absolute}: it is outside the workspace {workspace}; "
            "stage outputs must stay inside the project (run stages from its root)"
        )
    return Path(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it into place on success."""
    with atomic_path(path) as temporary, temporary.open(mode) as stream:
        yield stream


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with Outputs() as outputs:
        outputs.write_json(path, data)
