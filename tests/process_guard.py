"""No process the test suite starts outlives it (issue 17: a SIGKILL-test worker was found
orphaned, polling Redis, half an hour after a run).

* ``pytest_configure`` puts ``QUICKBG_TEST_RUN=<pid of this pytest session>`` in ``os.environ``;
  every process the suite starts inherits it (``tests.helpers.subprocess_env`` copies it too).
* Tests start subprocesses with ``start_new_session=True`` and stop them with ``reap`` (the whole
  process group, SIGKILL at the end) in a ``finally`` or a fixture's teardown.
* ``pytest_sessionfinish`` scans ``/proc`` for live processes carrying this session's marker.
  Any it finds are listed, killed, and the run fails.

Plain pytest and the standard library only (no Django), so a test can load it alone as a plugin
(``-p tests.process_guard``). ``tests/conftest.py`` imports the two hooks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

TEST_RUN_VAR = "QUICKBG_TEST_RUN"


def reap(proc: subprocess.Popen, *, first_signal: int = signal.SIGTERM,
         timeout: float = 30) -> int:
    """Stop ``proc`` and its whole process group, also what it started in turn.

    ``proc`` must have been started with ``start_new_session=True`` (its pid is its group id).
    Sends ``first_signal`` to the group, waits up to ``timeout`` s, then SIGKILLs the group -
    always, so no child or grandchild outlives the test. Returns the exit code.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, first_signal)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, or a leader that hung
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait(timeout=30)


def leftover_processes(run_id: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment carries ``QUICKBG_TEST_RUN=run_id``."""
    marker = f"{TEST_RUN_VAR}={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # exited, waiting to be collected: nothing runs
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append((int(entry), cmdline))
    return found


def pytest_configure(config):
    os.environ[TEST_RUN_VAR] = str(os.getpid())


def pytest_sessionfinish(session, exitstatus):
    run_id = str(os.getpid())
    if os.environ.get(TEST_RUN_VAR) != run_id:
        return
    deadline = time.monotonic() + 5  # processes being reaped right now may take a moment
    left = leftover_processes(run_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftover_processes(run_id)
    if not left:
        return
    lines = [f"  pid {pid}: {cmdline}" for pid, cmdline in left]
    sys.stderr.write("\nprocess_guard: processes started by this test run are still alive "
                     "(killed now; the run fails):\n" + "\n".join(lines) + "\n")
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
