"""The team stack's processes: free ports, pid files and process groups we started.

Each server runs in its own process group; its id is kept in ``<dir>/pids/<service>.pid``,
and a pid counts as ours only while the process's command line or environment names the
stack folder (the kernel reuses pids).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

from digits.errors import PipelineError
from teamstack.files import SERVER_UMASK, open_private_log, private_dir, write_private

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``127.0.0.1:port`` (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers bind: a closed connection's TIME_WAIT does not count as in use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def pid_file(folder: Path, service: str) -> Path:
    return folder / "pids" / f"{service}.pid"


def running_pid(folder: Path, service: str) -> int | None:
    """The process id of ``service`` when its pid file names a live process we started.

    Ours means the stack folder is in its command line (PostgreSQL's ``-D``, SeaweedFS'
    ``-dir``) or its environment (MLflow's ``MLFLOW_AUTH_CONFIG_PATH``): a pid the kernel has
    since given to another program is never taken for ours.
    """
    path = pid_file(folder, service)
    try:
        pid = int(path.read_text())
        proc = Path(f"/proc/{pid}")
        seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid if str(folder.resolve()).encode() in seen and state != "Z" else None


def spawn(folder: Path, service: str, command: list[str], env: dict, **options) -> int:
    """Start ``command`` in its own process group, log to ``logs/<service>.log``; its pid.

    The log, the pid file and what the server writes are private (``teamstack.files``).
    """
    private_dir(folder / "logs")
    private_dir(folder / "pids")
    with open_private_log(folder / "logs" / f"{service}.log") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            umask=SERVER_UMASK,
            **options,
        )
    write_private(pid_file(folder, service), f"{process.pid}\n")
    # Until the child has exec'd the server, /proc shows Python's command line and environment,
    # so `running_pid` would not recognise it yet: wait for the exec (or an early exit).
    deadline = time.monotonic() + 10
    while running_pid(folder, service) is None and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return process.pid


def wait_until(ready, what: str, folder: Path, service: str) -> None:
    """Poll ``ready()`` until it is true; a dead process or the timeout is an error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    # The process we just started, by its pid file: right after the fork its command line is
    # still Python's (not yet the server's), so ``running_pid`` would not know it yet.
    pid = int(pid_file(folder, service).read_text())
    while time.monotonic() < deadline:
        if not group_alive(pid):
            break
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.5)
    log = folder / "logs" / f"{service}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    raise PipelineError(f"{what} did not start; last lines of {log}:\n" + "\n".join(tail))


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs.

    Zombies do not count: they have exited and only wait for their parent to reap them (a
    group leader that is our own child, or an orphan that init has not reaped yet), and
    ``killpg(pgid, 0)`` would still find them.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid pgrp ...": the command may hold spaces and brackets
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        if int(group) == pgid and state != "Z":
            return True
    return False


def wait_gone(pgid: int, timeout: float, poll: float = 0.1) -> bool:
    """Wait up to ``timeout`` seconds for every process of group ``pgid`` to exit; return
    whether they all have (``group_alive``: zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
