"""The README's batch curl sequence, run verbatim against a live server and a real worker."""

from __future__ import annotations

import io
import subprocess
import zipfile

import pytest
from PIL import Image

from tests.factories import PASSWORD
from tests.helpers import readme_block, subprocess_env
from tests.images import FIXTURES
from tests.live import worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def test_readme_batch_curl_sequence_works(live_server, user, tmp_path):
    script = readme_block("batch-curl-start", "batch-curl-end")
    # Small crops, so the worker's two jobs are quick (the model runs at 1024x1024 anyway).
    images = []
    for name in ("car-1.jpg", "animal-2.jpg"):
        path = tmp_path / name
        Image.open(FIXTURES / name).convert("RGB").crop((0, 0, 300, 200)).save(path, "JPEG")
        images.append(path)
    with worker_process("readme-batch"):
        env = subprocess_env() | {
            "QUICKBG": live_server.url, "QUICKBG_USER": user.username,
            "QUICKBG_PASSWORD": PASSWORD, "IMAGE1": str(images[0]), "IMAGE2": str(images[1]),
        }
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed 100" in proc.stdout
    assert "car-1.png" in proc.stdout and "manifest.json" in proc.stdout
    archive = zipfile.ZipFile(tmp_path / "results.zip")
    assert archive.namelist() == ["car-1.png", "animal-2.png", "manifest.json"]
    result = Image.open(io.BytesIO(archive.read("car-1.png")))
    assert result.format == "PNG" and result.mode == "RGBA"
