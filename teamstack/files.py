"""The team stack's private files: its folder is 0700 and each file in it 0600 from the moment
it exists, whatever the umask, since they hold passwords, keys and the servers' data.

Files are created with ``os.open(..., O_CREAT | O_EXCL, 0o600)`` (the mode is set by the call
that makes the file, so no other user can open it in between) and replaced atomically; the
servers the stack starts run with a umask of 077 (``SERVER_UMASK``), so what they write is
private too.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# What the servers (initdb, PostgreSQL, SeaweedFS, MLflow) start with: their files 0600.
SERVER_UMASK = 0o077


def private_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """``path`` as a folder of ``mode`` (0700 unless a server account must pass through it),
    made with that mode when missing, and set to it when it exists."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    # mkdir's mode passes through the umask, and an existing folder keeps its own.
    path.chmod(mode)
    return path


def create_private(path: Path, owner: tuple[int, int] | None = None) -> int:
    """A new file at ``path``, mode 0600 from its creation (``O_EXCL``: never an existing one,
    nor a link someone left there), optionally owned by ``(uid, gid)``; its descriptor."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)  # a umask can only remove bits; no harm in saying it
        if owner is not None:
            os.fchown(descriptor, *owner)
    except BaseException:
        os.close(descriptor)
        path.unlink()
        raise
    return descriptor


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``text``, atomically, the new file 0600 before it holds a byte."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    descriptor = create_private(partial, owner)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def open_private_log(path: Path):
    """``path`` opened for appending, created 0600 (an existing log is set to 0600)."""
    descriptor = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE
    )
    os.fchmod(descriptor, PRIVATE_FILE)
    return os.fdopen(descriptor, "ab")
