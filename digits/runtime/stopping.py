"""How a stage stops: the wrapper that turns the pipeline's exceptions into a clean exit.

Also what a stage knows about its own process: which signals stop it, whether the ``dvc``
process that started it is still there, and which outputs it has replaced so far (so that
the message printed on a stop says what is true).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from digits.errors import PipelineError, Terminated

# Signals that stop a stage cleanly: Ctrl-C, `kill` / a CI runner / a scheduler, and a closed
# terminal. Each raises in the main thread, so ``finally`` blocks remove temporary files.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGNAL_NAMES = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated",
    signal.SIGHUP: "hung up",
}
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# How long a stopped stage may spend cleaning up (ending its MLflow run, removing temporary
# files) before it is ended anyway: a scheduler's grace period before SIGKILL is 10-30 s.
STOP_GRACE_SECONDS = 25


class _Process:
    """This process's stage state: its dvc parent and the outputs it has replaced."""

    parent: int | None = None  # pid of the dvc process that started the stage
    replaced: list[Path] = []  # noqa: RUF012 - one list for the process, on purpose
    stop: int | None = None  # the signal that stopped it, once one has
    bounded: bool = False  # the process is the stage: a stop bounds its remaining life


def note_replaced(paths: list[Path]) -> None:
    """Record outputs that now hold this run's results (for the message on a stop)."""
    _Process.replaced.extend(paths)


def replaced_outputs() -> tuple[Path, ...]:
    """The outputs this process has replaced so far."""
    return tuple(_Process.replaced)


def raise_if_stopped() -> None:
    """Raise again the stop a signal asked for, if its exception was lost.

    A signal handler's exception that lands in a ``__del__`` method or a weakref callback
    (TensorFlow runs many) is printed as "Exception ignored" and dropped, and the stage would
    run on with further stops ignored. Long loops call this once per chunk of work.
    """
    if _Process.stop == signal.SIGINT:
        raise KeyboardInterrupt
    if _Process.stop is not None:
        raise Terminated(_Process.stop)


def parent_gone() -> bool:
    """True when the stage was started by ``dvc`` and that process has exited since."""
    return _Process.parent is not None and os.getppid() != _Process.parent


def watch_parent(environ: dict[str, str] | os._Environ) -> None:
    """Under ``dvc`` (it sets ``DVC_STAGE``), stop when the dvc process goes away.

    DVC does not stop the stage it started when it is itself terminated; the stage would run
    on and replace outputs behind its back, with ``dvc.lock`` not updated. The kernel sends
    SIGTERM when the parent exits (Linux ``PR_SET_PDEATHSIG``), and the final swap of outputs
    checks that the parent is still the one that started the stage (a re-parented process
    has another). A stage run by hand keeps running when its shell goes (``nohup``).
    """
    if "DVC_STAGE" not in environ:
        return
    _Process.parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP for the block; act on the first one after it.

    For a short step that must not stop half-way (renaming a stage's outputs into place).
    Python runs signal handlers in the main thread whichever thread the kernel picks, so the
    handlers are swapped, not the thread's signal mask; in any other thread the block just
    runs (no signal stops it there, and only the main thread may swap handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, frame: pending.append(number))
        for signum in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


def run_stage(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a stage's ``main`` and map failures to exit codes.

    A ``PipelineError`` prints ``error: <message>`` without a traceback (exit 1), Ctrl-C
    exits 130, SIGTERM 143 and SIGHUP 129, after ``finally`` blocks have removed temporary
    files; the line printed says which outputs, if any, were replaced. Anything else is a
    bug and keeps its traceback.

    Returns:
        The process exit code.
    """
    _Process.stop = None
    _Process.replaced = []
    _Process.bounded = argv is None
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, _raise_terminated)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it;
    # a stage always stops cleanly on SIGINT (Ctrl-C, `dvc queue kill`).
    signal.signal(signal.SIGINT, _interrupt)
    # An ignored SIGHUP stays ignored: that is how `nohup` keeps a stage running.
    if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _raise_terminated)
    watch_parent(os.environ)
    try:
        main(argv)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(stop_message(signal.SIGINT), file=sys.stderr)
        return 128 + signal.SIGINT
    except Terminated as stop:
        print(stop_message(stop.signum), file=sys.stderr)
        return 128 + stop.signum
    finally:
        if argv is not None:  # run in-process (tests, tools): leave the process as it was
            _Process.stop = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if argv is None:  # the process is the stage: it only has to exit now
        # A stop from here on would only turn a complete stage into a failed one.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    return 0


def exit_stage(code: int) -> NoReturn:
    """End the stage process with ``code`` without the interpreter's own shutdown.

    Once a TensorFlow stage has printed its last line, Python's shutdown (clearing every
    module, then TensorFlow's C++ destructors) takes seconds more, with no Python
    frame running; every `dvc repro` and `dvc exp run` waited for it. By then the outputs are
    in place and the MLflow run is ended. What a normal exit does that matters still happens:
    threads that are not daemons are waited for, ``atexit`` handlers run (the stderr filter
    of ``digits.runtime.native_log`` writes out what it holds) and the standard streams are
    flushed.
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to keep
            stream.flush()
    os._exit(code)


def stop_message(signum: int) -> str:
    """What a stage stopped by ``signum`` prints: which outputs are new, if any."""
    name = SIGNAL_NAMES.get(signum, f"signal {signum}")
    replaced = replaced_outputs()
    if not replaced:
        return f"{name}: nothing was replaced; the previous outputs are in place"
    return (
        f"{name} after replacing {', '.join(map(str, replaced))} (complete and consistent); "
        "dvc.lock does not record them, so `dvc repro` runs the stage again"
    )


def _raise_terminated(signum: int, frame: object) -> None:
    _ignore_further_stops(signum)
    raise Terminated(signum)


def _interrupt(signum: int, frame: object) -> None:
    _ignore_further_stops(signum)
    raise KeyboardInterrupt


def _ignore_further_stops(signum: int) -> None:
    """One stop is enough. A second one would interrupt the clean-up the first started (ending
    the MLflow run KILLED, removing temporary files): SIGTERM to dvc's process group reaches
    the stage, then the parent-death SIGTERM once dvc has exited; or Ctrl-C pressed twice.
    The first is remembered for ``raise_if_stopped``, and bounds the time left: a clean-up
    still running ``STOP_GRACE_SECONDS`` later (stuck in a library call, or a stop whose
    exception was lost where no loop asks again) prints every thread's traceback and exits.
    ``faulthandler``'s watchdog is a C thread, so it fires even while the main thread is
    blocked in C code."""
    if _Process.bounded and _Process.stop is None:
        faulthandler.dump_traceback_later(STOP_GRACE_SECONDS, exit=True)
    _Process.stop = signum
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (_raise_terminated, _interrupt):
            signal.signal(signum, signal.SIG_IGN)
