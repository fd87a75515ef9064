"""SIGTERM to a command ends it with its clean-up done: the servers it started (each in a session of
its own, which a signal to the command's process group does not reach) are stopped, not orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ppo_client.console import TERMINATED_EXIT_CODE

COMMAND = textwrap.dedent("""
    import subprocess, sys, time
    from ppo_client.console import run_cli
    from ppo_client.processes import stop_process_group

    def command():
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            print(child.pid, flush=True)
            time.sleep(600)
        finally:
            stop_process_group(child, timeout_s=5, name="child")
            print("stopped", flush=True)

    sys.exit(run_cli(command))
""")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_runs_the_clean_up_and_stops_the_child_a_command_started():
    with subprocess.Popen([sys.executable, "-c", COMMAND], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            child = int(process.stdout.readline())
            assert alive(child)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == TERMINATED_EXIT_CODE, err
    assert out.strip() == "stopped" and "terminated" in err
    assert not alive(child)


def test_the_handler_is_undone_when_the_command_returns():
    from ppo_client.console import run_cli

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(lambda: 0) == 0
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_sigterm_during_the_clean_up_ends_the_command_at_once():
    slow = COMMAND.replace('stop_process_group(child, timeout_s=5, name="child")',
                           'print("cleaning", flush=True); time.sleep(600)')
    with subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            child = int(process.stdout.readline())
            process.send_signal(signal.SIGTERM)
            assert process.stdout.readline().strip() == "cleaning"
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
            assert process.returncode == -signal.SIGTERM
        finally:
            if process.poll() is None:
                process.kill()
            os.kill(child, signal.SIGKILL)
