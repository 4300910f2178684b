"""`make run` (``manage.py run_local``): starts Redis, the API and a worker, prints the URLs and a
demo login, stops everything on Ctrl-C, and reuses its state on a second run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, reap, subprocess_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_local"], cwd=ROOT, env=env,
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115 - closed on exit
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def wait_for_banner(log: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Demo login:" in text:
            return text
        assert proc.poll() is None, text
        time.sleep(0.5)
    raise AssertionError(log.read_text(errors="replace"))


def ctrl_c(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    finally:
        reap(proc, first_signal=signal.SIGKILL)  # whatever Ctrl-C left in its group


def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path):
    port = free_port()
    env = subprocess_env() | {"PORT": str(port), "QUICKBG_STATE_DIR": str(tmp_path / "state")}
    env.pop("REDIS_URL")  # local mode: run_local starts its own redis-server
    proc = start(env, tmp_path / "first.log")
    try:
        banner = wait_for_banner(tmp_path / "first.log", proc)
        for url in (f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/api/v1/docs",
                    f"http://127.0.0.1:{port}/admin/"):
            assert url in banner
        password = re.search(r"Demo login: demo / (\S+)", banner).group(1)
        redis_port = int(re.search(r"Started redis-server on port (\d+)", banner).group(1))
        health = None
        for _ in range(120):
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, health and health.text
        # The banner's own curl lines work as printed.
        lines = banner[banner.index("TOKEN=$(curl"):].splitlines()
        printed = "\n".join(line.strip() for line in lines[:3])  # the TOKEN command
        proc_curl = subprocess.run(["bash", "-e", "-c", printed + '\necho "token:${#TOKEN}"'],
                                   capture_output=True, text=True, timeout=60)
        assert proc_curl.returncode == 0, proc_curl.stderr
        assert int(re.search(r"token:(\d+)", proc_curl.stdout).group(1)) > 100
    finally:
        ctrl_c(proc)
    assert not port_open(port) and not port_open(redis_port)

    # A second run reuses the demo login the first one created.
    proc = start(env, tmp_path / "second.log")
    try:
        banner = wait_for_banner(tmp_path / "second.log", proc)
        assert f"Demo login: demo / {password}" in banner
    finally:
        ctrl_c(proc)
