import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers.paths import REPO_ROOT

from digits.runtime.stopping import raise_if_stopped, run_stage, signals_deferred

# A stage whose clean-up gets a second stop signal, as a stage under `dvc repro` does when
# dvc's process group gets SIGTERM and then dvc's exit sends the parent-death SIGTERM.
STAGE = """
import os, signal, sys, time
from digits.runtime.stopping import run_stage

def main(argv):
    try:
        os.kill(os.getpid(), signal.{first})
        time.sleep(5)
    finally:
        os.kill(os.getpid(), signal.{second})
        time.sleep(0.2)
        print("clean-up finished", flush=True)

sys.exit(run_stage(main))
"""


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [("SIGTERM", "SIGTERM", 143), ("SIGINT", "SIGTERM", 130), ("SIGTERM", "SIGINT", 143)],
)
def test_a_second_stop_does_not_interrupt_the_clean_up_of_the_first(first, second, code):
    result = subprocess.run(
        [sys.executable, "-c", STAGE.format(first=first, second=second)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert "clean-up finished" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr


# A stop whose exception lands in a `__del__` method: Python prints "Exception ignored" and
# drops it. The stage's loop asks again at its next chunk of work.
SWALLOWED = """
import gc, os, signal, sys, time
from digits.runtime.stopping import raise_if_stopped, run_stage

class Resource:
    def __del__(self):
        os.kill(os.getpid(), signal.{signal})
        time.sleep(0.2)  # the handler runs here, inside __del__

def main(argv):
    Resource()
    gc.collect()
    print("the stop was swallowed", flush=True)
    for chunk in range(50):
        raise_if_stopped()
        time.sleep(0.1)
    print("the loop ran to its end", flush=True)

sys.exit(run_stage(main))
"""


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_swallowed_by_a_destructor_still_stops_the_loop(name, code):
    result = subprocess.run(
        [sys.executable, "-c", SWALLOWED.format(signal=name)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Exception ignored" in result.stderr, "the test must lose the first exception"
    assert "the stop was swallowed" in result.stdout, result.stderr
    assert "the loop ran to its end" not in result.stdout
    assert result.returncode == code, result.stderr


def test_a_stage_run_in_process_leaves_no_stop_and_no_handler_behind():
    def main(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    before = signal.getsignal(signal.SIGTERM)
    assert run_stage(main, []) == 143
    assert signal.getsignal(signal.SIGTERM) == before
    raise_if_stopped()  # the stop ended that stage; it must not stop the next piece of work


# A clean-up that never ends: the stop bounds what is left of the stage's life.
STUCK = """
import os, signal, sys, time
from digits.runtime import stopping

def main(argv):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    finally:
        stuck_in_clean_up()

def stuck_in_clean_up():
    time.sleep(60)

stopping.STOP_GRACE_SECONDS = 2
sys.exit(stopping.run_stage(main))
"""


def test_a_clean_up_that_hangs_after_a_stop_ends_in_the_grace_period_saying_where():
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", STUCK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "Timeout (0:00:02)!" in result.stderr
    assert "stuck_in_clean_up" in result.stderr


# A stage that ends with work still pending: a thread that is not a daemon, an atexit handler
# and output left in the buffers (stdout is a pipe here, so Python buffers it).
ENDING = """
import atexit, sys, threading, time
from pathlib import Path
from digits.runtime.stopping import exit_stage

def late_write():
    time.sleep(0.3)
    Path(sys.argv[1]).write_text("written")

threading.Thread(target=late_write).start()
atexit.register(lambda: print("atexit handler ran"))
print("last line", end="")
sys.stderr.write("last error line")
exit_stage(3)
"""


def test_exit_stage_skips_the_interpreter_shutdown_but_loses_no_pending_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", ENDING, str(tmp_path / "late.txt")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert result.stdout == "last lineatexit handler ran\n"
    assert result.stderr == "last error line"
    assert (tmp_path / "late.txt").read_text() == "written", "the thread was waited for"


def test_signals_deferred_holds_a_stop_until_the_block_ends_in_the_main_thread_only():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: seen.append("handled"))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            seen.append("block done")
        assert seen == ["block done", "handled"]

        def in_a_thread():  # no handler can be swapped there: the block just runs
            with signals_deferred():
                seen.append("thread block")

        worker = threading.Thread(target=in_a_thread)
        worker.start()
        worker.join()
        assert seen[-1] == "thread block"
    finally:
        signal.signal(signal.SIGTERM, previous)
