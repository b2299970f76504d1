"""TensorFlow's native log lines, filtered by ``TF_CPP_MIN_LOG_LEVEL`` as its Python side is.

TensorFlow's C++ code logs through absl, and nothing calls ``absl::InitializeLog()``: absl
then writes every line to stderr, ignoring ``TF_CPP_MIN_LOG_LEVEL``, and starts with
``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``.
On a normal run that is the oneDNN notice (``I0000 ... port.cc:153] oneDNN custom operations
are on``), once per TensorFlow library, and after a saved model is used a 700-character
``E0000 ... node_def_util.cc:...] NodeDef mentions attribute use_unbounded_threadpool`` line
that reads like a failure (a tf.data attribute TensorFlow itself added; harmless).

A stage that runs TensorFlow sends its stderr (file descriptor 2, where native code writes)
through a filter process:

    if __name__ == "__main__":
        filter_native_log()
        exit_stage(run_stage(main))

It drops those lines, and absl lines below the level; everything else (Python tracebacks,
``error:`` lines, absl errors) passes unchanged. The filter is a forked child process, not a
thread, so a stage that crashes or is killed still has its last lines shown: the child reads
until every writer has closed the pipe. ``TF_CPP_MIN_LOG_LEVEL=0`` shows every line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import sys
import time

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = 1  # as stages/__init__.py sets it: warnings and errors, no INFO
PREAMBLE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)
# absl's prefix: severity, MMDD, time (before InitializeLog: 00:00:<epoch seconds>), thread
# id, file:line]   I0000 00:00:1796411412.574132    6967 port.cc:153] ...
ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]\s]+:\d+\] ")
SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# Errors TensorFlow logs about itself on a successful run (see the module docstring).
FALSE_ALARMS = (b"NodeDef mentions attribute use_unbounded_threadpool",)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def min_level(environ: dict[str, str] | os._Environ = os.environ) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 to 3), the stages' default if unset."""
    value = environ.get(LEVEL_VARIABLE, "").strip()
    return int(value) if value.isdigit() else DEFAULT_LEVEL


def keep(line: bytes, level: int) -> bool:
    """Whether a stderr line is shown at ``level`` (lines are given without their newline)."""
    if level == 0:
        return True
    if line.rstrip() == PREAMBLE:
        return False
    found = ABSL_LINE.match(line)
    if found is None:  # not absl's: Python, the stage, another library
        return True
    if any(alarm in line for alarm in FALSE_ALARMS):
        return False
    # FATAL always shows: absl aborts the process after it.
    return found.group(1) == b"F" or SEVERITY[found.group(1)] >= level


def copy_filtered(source: int, target: int, level: int) -> None:
    """Copy lines from file descriptor ``source`` to ``target`` until end of file, dropping
    those ``keep`` refuses. A last line without a newline is copied too."""
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        shown = b"".join(line + b"\n" for line in lines if keep(line, level))
        if shown:
            os.write(target, shown)
    if pending and keep(pending, level):
        os.write(target, pending)


def filter_native_log() -> None:
    """Route this process's stderr through a filter child (call before importing TensorFlow).

    The child is a fork, so it costs no interpreter start-up (``--help`` stays quick); call
    this before the process starts threads. At exit the original stderr is put back and the
    child is given a few seconds to write what it still holds, so the stage's last lines
    come before whatever its caller prints next.
    """
    level = min_level()
    if level == 0:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the filter: reads until every writer has closed the pipe
        # The stage's stop signals reach it too (Ctrl-C, a group SIGTERM): it keeps reading,
        # so the stage's own last lines still show.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        os.close(write_end)
        os.dup2(original, 2)
        for descriptor in (0, 1, original):  # hold nothing of the stage's open
            os.close(descriptor)
        try:
            copy_filtered(read_end, 2, level)
        finally:
            os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes this process's end of the pipe
        # A child process of the stage may still hold the pipe: wait a few seconds at most.
        deadline = time.monotonic() + 5
        with contextlib.suppress(ChildProcessError):  # already reaped (SIGCHLD ignored)
            while os.waitpid(child, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.01)

    atexit.register(restore)


def quiet_command() -> None:
    """Make a command a user runs (``digits-predict``, ``make serve``) as quiet as the stages:
    TensorFlow's C++ INFO lines and absl's preamble filtered out, no MLflow progress bars.

    Call it first in the command's entry point, before TensorFlow loads; a user's own
    ``TF_CPP_MIN_LOG_LEVEL`` or ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` wins.
    """
    os.environ.setdefault(LEVEL_VARIABLE, str(DEFAULT_LEVEL))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    filter_native_log()
