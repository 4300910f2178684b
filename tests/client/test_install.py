"""The README's install command, for real: ``pip install ./client`` into a fresh venv (its
dependencies from PyPI, a full install, about 20 s), then the installed ``quickbg`` runs."""

from __future__ import annotations

import shutil
import sys

from tests.client.tools import CLIENT_DIR
from tests.live import run_reaped


def test_pip_install_client_gives_a_working_quickbg(tmp_path):
    shutil.copytree(CLIENT_DIR, tmp_path / "client",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    made = run_reaped([sys.executable, "-m", "venv", str(venv)], timeout=120)
    assert made.returncode == 0, made.stderr.decode()
    installed = run_reaped([str(venv / "bin" / "pip"), "install", "--quiet",
                            "--disable-pip-version-check", "./client"],
                           timeout=600, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr.decode()[-3000:]

    helped = run_reaped([str(venv / "bin" / "quickbg"), "--help"], timeout=60)
    assert helped.returncode == 0, helped.stderr.decode()
    assert b"remove" in helped.stdout and b"Exit status: 0 all done" in helped.stdout
    # Its own copy, not the checkout's: the package is importable from the venv alone.
    where = run_reaped([str(venv / "bin" / "python"), "-c",
                        "import quickbg_client, sys; print(quickbg_client.__file__)"],
                       timeout=60, cwd=tmp_path / "venv")
    assert str(venv) in where.stdout.decode(), where
    usage = run_reaped([str(venv / "bin" / "quickbg"), "remove", "nowhere", "-o", "out",
                        "--api-key", "k"], timeout=60, cwd=tmp_path)
    assert usage.returncode == 2 and b"no such file or folder: nowhere" in usage.stderr
