"""The pipeline's own exceptions, and the one that names an output a stage could not write.

How a stage turns them into a clean exit, and what it knows about its own process (signals,
its ``dvc`` parent, the outputs it has replaced), is ``digits.runtime.stopping``.
"""

from __future__ import annotations

import errno
import os
import signal

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class PipelineError(Exception):
    """A problem the user can fix: the message names it and says what to do."""


class ParamsError(PipelineError, ValueError):
    """params.yaml holds an unknown key, a missing key, a wrong type or a bad value."""


class DataError(PipelineError, ValueError):
    """An input file is missing, malformed or inconsistent with the others."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP so that cleanup code runs as it does
    on Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def write_error(path: str | os.PathLike[str], error: OSError, where: str = "") -> PipelineError:
    """A ``PipelineError`` for an ``OSError`` met while writing the output ``path``."""
    reason = error.strerror or str(error)
    hint = "free some space there and rerun" if error.errno in DISK_FULL else "fix that and rerun"
    place = f" ({where})" if where else ""
    return PipelineError(
        f"cannot write {path}{place}: {reason}; {hint}; no output of this stage was replaced"
    )
