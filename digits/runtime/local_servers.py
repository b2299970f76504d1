"""Servers this project starts for a while (model server, MLflow UI in tests): on 127.0.0.1, a
free port, ready when a URL answers, stopped by process id when the block ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports of 127.0.0.1. Each probe stays bound until all are
    chosen: asked one after another, the kernel may hand out the same port twice."""
    with contextlib.ExitStack() as probes:
        ports = []
        for _ in range(count):
            probe = probes.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        return ports


def answers(url: str, timeout: float = 5) -> bool:
    """Whether ``url`` answers HTTP 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running(
    command: Sequence[str],
    ready_url: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180,
    name: str = "",
) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends, once ``ready_url`` answers.

    The server gets its own process group (a server's workers with it), stopped by its process
    id when the block ends, also on an exception: SIGTERM, then SIGKILL after 30 s. ``name``
    says what it is in errors (default: the command's first word).

    Raises:
        RuntimeError: The server exited, or ``ready_url`` did not answer within ``timeout``
            seconds; the message holds the server's log.
    """
    with log_path.open("w") as log:
        server = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not answers(ready_url):
            if server.poll() is not None or time.monotonic() > deadline:
                state = "exited" if server.poll() is not None else f"did not answer {ready_url}"
                raise RuntimeError(f"{name or command[0]} {state}:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield server
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """Stop ``server`` (started with ``start_new_session=True``) by its process id: SIGTERM to
    its process group, then SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
