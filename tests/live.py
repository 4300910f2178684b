"""Processes for tests against a live server: a real worker, and commands run in their own
process group. Every process started here is killed with its group on exit, also on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def _reap(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def run_reaped(command: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group, capture its output, kill the group after."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _reap(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@contextlib.contextmanager
def worker_process(name: str, *args: str, env: dict | None = None):
    """A real QuickBG worker (``manage.py run_worker``, the real model) on the test's queue;
    ``args`` go to ``run_worker`` (e.g. ``--models``), ``env`` on top of the test's."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--name", f"{name}-{os.getpid()}", *args],
        cwd=ROOT, env={**subprocess_env(), **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        _reap(proc)
