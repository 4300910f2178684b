"""The README's "Use QuickBG where you used remove.bg" blocks (curl, then Python requests), run
verbatim against a live server and a real worker process with the real model."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

from accounts.models import UserAPIKey
from tests.factories import PASSWORD
from tests.helpers import readme_block, subprocess_env
from tests.images import fixture_bytes
from tests.live import run_reaped, worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def assert_cutout(path) -> None:
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (300, 225)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[112, 150] >= 250


def test_readme_removebg_curl_and_python_examples_work(live_server, user, tmp_path):
    car = Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").resize((300, 225))
    car.save(tmp_path / "car.jpg", quality=92)
    env = subprocess_env() | {
        "QUICKBG": live_server.url, "QUICKBG_USER": user.username,
        "QUICKBG_PASSWORD": PASSWORD, "IMAGE": str(tmp_path / "car.jpg"),
    }
    with worker_process("readme-removebg"):
        curl = run_reaped(["bash", "-e", "-c", readme_block(
            "removebg-curl-start", "removebg-curl-end", "bash")], timeout=180, cwd=tmp_path,
            env=env)
        assert curl.returncode == 0, (curl.stdout + curl.stderr).decode()
        out = curl.stdout.decode()
        assert "saved no-bg.png" in out
        assert re.search(r"(?im)^x-credits-charged: 1\s*$", out)
        assert re.search(r"(?im)^x-foreground-width: \d+", out)
        assert '"credits":{"total":1.0' in out
        assert_cutout(tmp_path / "no-bg.png")

        [key] = UserAPIKey.objects.filter(user=user)
        # The curl block printed nothing of the key; the Python block takes a fresh one.
        env["QUICKBG_API_KEY"] = UserAPIKey.objects.create_key(user=user, name="py")[1]
        python = run_reaped([sys.executable, "-c", readme_block(
            "removebg-python-start", "removebg-python-end", "python")], timeout=180,
            cwd=tmp_path, env=env)
    assert python.returncode == 0, (python.stdout + python.stderr).decode()
    assert "saved no-bg-python.png 300 x 225" in python.stdout.decode()
    assert_cutout(tmp_path / "no-bg-python.png")
    assert key.name == "scripts"
