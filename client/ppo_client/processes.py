"""Child servers the project starts (Triton, the local LLM): free ports, readiness, clean stops.

Each child runs in its own session, so a stop ends it with everything it spawned.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 40


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_path(log_file: Path | str | None, prefix: str) -> Path:
    """``log_file``, or a new temporary file named after the child when none is given."""
    if log_file is not None:
        return Path(log_file)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    os.close(handle)
    return Path(name)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    return "\n".join(text[-lines:])


def exit_status(code: int) -> str:
    """``exited with code 1`` or ``was killed by signal 11 (SIGSEGV)``, from ``Popen.returncode``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {-code} ({name})"


def check_alive(process: subprocess.Popen | None, *, name: str, log_file: Path, error: Callable[[str], Exception]) -> None:
    """Raise ``error`` saying how the child ended, with its log's tail, if it is no longer running."""
    if process is None:
        raise error(f"{name} is not running")
    code = process.poll()
    if code is not None:
        raise error(f"{name} (pid {process.pid}) {exit_status(code)}; last lines of {log_file}:\n{log_tail(log_file)}")


def wait_http_ready(
    process: subprocess.Popen | None, url: str, *, timeout_s: float, log_file: Path, name: str,
    error: Callable[[str], Exception],
) -> None:
    """Poll ``url`` until it answers 200; raise ``error(message)`` with the log's tail if the
    process exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive(process, name=f"{name}, starting,", log_file=log_file, error=error)
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise error(f"{name} was not ready after {timeout_s:.0f} s; last lines of {log_file}:\n{log_tail(log_file)}")


GROUP_EXIT_TIMEOUT_S = 10.0
"""How long the processes a child spawned may take to go once killed (a python-backend stub
releasing a large shared-memory region takes a moment)."""


def stop_process_group(process: subprocess.Popen, *, timeout_s: float, name: str) -> None:
    """SIGTERM, wait, then SIGKILL the child's whole process group, and wait until none of it is left,
    so that a stop that returned leaves nothing running."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0f s; killing it", name, timeout_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + GROUP_EXIT_TIMEOUT_S
    while group_members(process.pid):
        if time.monotonic() > deadline:
            logger.warning("processes of %s's group were still running %.0f s after SIGKILL", name, GROUP_EXIT_TIMEOUT_S)
            break
        time.sleep(0.05)
    logger.info("%s stopped", name)


def group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (not zombies waiting to be reaped)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone while we looked
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
