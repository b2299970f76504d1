"""The one entry of every stage: process set-up in the order it needs, then the stage.

    if __name__ == "__main__":
        run(main)

Before TensorFlow can load: its C++ log level and oneDNN choice (``digits.runtime.cpu``), both read
once as it loads, and the thread budget (``digits.runtime.threads``), read when its runtime starts;
the filter of its native log lines (``digits.runtime.native_log``), a process that must be forked
before TensorFlow starts threads. Then the stage runs under ``digits.runtime.stopping.run_stage``
(``error:`` lines, exit codes on signals) and the process ends without the interpreter's
slow shutdown (``exit_stage``). Nothing here runs at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import NoReturn

from digits.runtime.cpu import prefer_onednn
from digits.runtime.native_log import DEFAULT_LEVEL, LEVEL_VARIABLE, filter_native_log
from digits.runtime.stopping import exit_stage, run_stage
from digits.runtime.threads import apply_thread_budget

Main = Callable[[list[str] | None], None]


def stage_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """Settings a stage's libraries read as they load; a user's own value wins.

    TensorFlow's C++ INFO lines (oneDNN, CPU features) say nothing a user can act on: only
    warnings and errors show. MLflow's progress bar, drawn while it copies a model of a few
    MiB in well under a second, shows in a pipeline's log as one garbled line per run.
    """
    environ.setdefault(LEVEL_VARIABLE, str(DEFAULT_LEVEL))
    environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    prefer_onednn(environ)


def with_thread_budget(main: Main) -> Main:
    """``main`` after ``DIGITS_THREADS`` is applied (its error is the stage's ``error:``)."""

    def budgeted(argv: list[str] | None) -> None:
        apply_thread_budget()
        main(argv)

    return budgeted


def run(main: Main, tensorflow: bool = True) -> NoReturn:
    """Set the process up for a stage, run ``main`` and end the process with its exit code.

    Args:
        main: The stage's ``main(argv)``.
        tensorflow: Whether the stage runs TensorFlow (train, evaluate, visualize): then its
            native log is filtered and the thread budget applies.
    """
    stage_environment()
    if tensorflow:
        filter_native_log()
        main = with_thread_budget(main)
    exit_stage(run_stage(main))
