"""The session-end check: a test run that leaves a process behind fails, and the process dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.process_guard import leftover_processes, reap

ROOT = Path(__file__).resolve().parents[2]

LEAKY_TEST = """
import subprocess


def test_forgets_its_child():
    child = subprocess.Popen(["sleep", "300"])  # never reaped: the guard must catch it
    print("CHILD", child.pid)
"""


def test_a_run_that_leaves_a_process_behind_fails_and_the_process_is_killed(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT)
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "tests.process_guard", "-p", "no:django",
         "-p", "no:cacheprovider", "-q", "-s", "test_leaky.py"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        output, _ = inner.communicate(timeout=120)
    finally:
        reap(inner, first_signal=signal.SIGKILL)
    assert "1 passed" in output, output  # the test itself passed ...
    assert inner.returncode == 1, output  # ... and the run failed for the leftover
    assert "still alive" in output and "sleep 300" in output, output
    child = output.split("CHILD ", 1)[1].split()[0]
    time.sleep(0.5)
    assert not _alive(child), f"pid {child} survived the run"


def _alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_this_session_marks_its_processes():
    run_id = os.environ["QUICKBG_TEST_RUN"]
    assert run_id == str(os.getpid())
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert any(pid == child.pid for pid, _ in leftover_processes(run_id))
    finally:
        child.kill()
        child.wait()
    assert all(pid != child.pid for pid, _ in leftover_processes(run_id))
