"""README, *Folders and scripts*: the block as written, in bash, in a fresh venv made by the
block itself (``pip install ./client``, a full install from PyPI), against a live server and a
real worker. Three model runs: two photos, and one of them again as WebP."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from removal.models import Task
from tests.client.tools import CLIENT_DIR, assert_cutout_png, small_jpeg
from tests.helpers import readme_block
from tests.live import run_reaped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def test_readme_client_block_installs_and_runs(worker, live_server, user, api_key, tmp_path):
    block = readme_block("client-start", "client-end")
    shutil.copytree(CLIENT_DIR, tmp_path / "client",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "car.jpg").write_bytes(small_jpeg("car-1.jpg", size=(230, 170)))
    (tmp_path / "photos" / "sub" / "girl.png").write_bytes(
        small_jpeg("girl-1.jpg", size=(170, 230), fmt="PNG"))
    home = tmp_path / "home"
    home.mkdir()
    # python3 is this interpreter (a venv made from it is based on the real one; it holds
    # nothing of this venv's packages).
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "HOME": str(home), "QUICKBG": live_server.url, "QUICKBG_API_KEY": api_key,
           "LANG": "C.UTF-8"}
    done = run_reaped(["bash", "-euo", "pipefail", "-c", block], timeout=900, env=env,
                      cwd=tmp_path)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-3000:]

    assert_cutout_png(tmp_path / "out" / "car.png")
    assert_cutout_png(tmp_path / "out" / "sub" / "girl.png")
    assert "2 done, 0 skipped, 0 failed" in stderr
    assert "0 done, 2 skipped, 0 failed" in stderr  # the second run
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()
             if line.startswith("{")]
    assert [(line["status"], line["output"]) for line in lines] == [("done", "out-webp/car.webp")]
    webp = Image.open(tmp_path / "out-webp" / "car.webp")
    assert webp.format == "WEBP"
    assert webp.convert("RGBA").getpixel((0, 0))[:3] == (255, 255, 255)
    assert not (tmp_path / "out-webp" / "sub").exists()  # --glob '*.jpg' left the PNG out
    # stdin: the same photo and options as out/car.png, so the same task's result.
    assert (tmp_path / "cutout.png").read_bytes() == (tmp_path / "out" / "car.png").read_bytes()
    assert "credits used this month: 3" in done.stdout.decode()
    assert "isnet-general-use" in done.stdout.decode().split()
    assert Task.objects.filter(upload__owner=user).count() == 3

    # The installed command is the venv's own copy, and its usage errors are exit status 2.
    quickbg = home / ".quickbg-client" / "bin" / "quickbg"
    helped = run_reaped([str(quickbg), "--help"], timeout=60, env=env)
    assert helped.returncode == 0 and b"Exit status: 0 all done" in helped.stdout
    usage = run_reaped([str(quickbg), "remove", "nowhere", "-o", "out"], timeout=60, env=env,
                       cwd=tmp_path)
    assert usage.returncode == 2 and b"no such file or folder: nowhere" in usage.stderr
    assert Image.open(io.BytesIO((tmp_path / "out" / "car.png").read_bytes())).mode == "RGBA"
