"""The README's curl sequence, run verbatim against a live server and a real worker process."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.factories import PASSWORD
from tests.helpers import readme_block, reap, subprocess_env
from tests.images import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def test_readme_curl_sequence_works(live_server, user, tmp_path):
    script = readme_block("curl-start", "curl-end")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--name", f"readme-{tmp_path.name}"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        env = subprocess_env() | {
            "QUICKBG": live_server.url, "QUICKBG_USER": user.username,
            "QUICKBG_PASSWORD": PASSWORD, "IMAGE": str(FIXTURES / "car-1.jpg"),
        }
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        reap(worker, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed 100" in proc.stdout
    assert "saved result.png" in proc.stdout
    result = Image.open(io.BytesIO((tmp_path / "result.png").read_bytes()))
    assert result.format == "PNG" and result.mode == "RGBA"
    alpha = np.asarray(result)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] >= 250
