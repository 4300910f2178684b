"""The published remove.bg clients, unchanged but for their hard-coded endpoint, against a live
QuickBG (pytest-django's ``live_server``) and a real worker process running the real model:

* the npm client ``remove.bg@1.3.0``: its three calls (file, base64, URL) must work;
* the PyPI client ``removebg`` 0.04: its three calls, one with an 8-digit ``bg_color``, and a
  blank image answered with remove.bg's ``unknown_foreground``.

``npm install`` runs in a temporary folder, ``pip install`` in a temporary venv, with their
download caches kept in ``~/.cache/quickbg/npm`` and ``~/.cache/quickbg/pip`` so later runs do
not download again.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from accounts.models import UserAPIKey
from removal.models import Task
from tests.helpers import LocalHTTPServer
from tests.images import fixture_bytes
from tests.live import run_reaped, worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]

CLIENT = "remove.bg@1.3.0"
ENDPOINT = "https://api.remove.bg/v1.0/removebg"
NPM_CACHE = Path.home() / ".cache" / "quickbg" / "npm"
PYPI_CLIENT = "removebg==0.04"
PIP_CACHE = Path.home() / ".cache" / "quickbg" / "pip"

SCRIPT = r"""
const rbg = require("remove.bg");
const [apiKey, path, base64img, url] = process.argv.slice(2);
(async () => {
  const out = {};
  out.file = await rbg.removeBackgroundFromImageFile({ path, apiKey, size: "regular" });
  out.base64 = await rbg.removeBackgroundFromImageBase64({ base64img, apiKey });
  out.url = await rbg.removeBackgroundFromImageUrl({ url, apiKey, size: "auto" });
  process.stdout.write(JSON.stringify(out));
})().catch((err) => { process.stderr.write(JSON.stringify(err)); process.exit(1); });
"""


@pytest.fixture
def npm_client(tmp_path) -> Path:
    """``npm install remove.bg@1.3.0`` in a temp folder, its endpoint constant rewritten later."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("npm and node are needed (.ci/run installs npm)")
    folder = tmp_path / "client"
    folder.mkdir()
    (folder / "package.json").write_text('{"name": "quickbg-client-test", "private": true}')
    done = run_reaped(["npm", "install", "--no-audit", "--no-fund", "--cache", str(NPM_CACHE),
                       CLIENT], timeout=300, cwd=folder)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return folder


@pytest.fixture
def worker():
    with worker_process("client-test") as proc:
        yield proc


def small_car() -> bytes:
    image = Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").resize((300, 225))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def assert_cutout(result: dict, size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(base64.b64decode(result["base64img"])))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == size
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[:5, :5].max() == 0 and alpha[-5:, -5:].max() == 0  # background gone
    h, w = alpha.shape
    assert alpha[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].min() >= 250  # the car kept
    assert result["detectedType"] == "other"
    assert (int(result["resultWidth"]), int(result["resultHeight"])) == size
    assert int(result["rateLimitRemaining"]) < int(result["rateLimit"])


def test_the_published_npm_client_works_unchanged(npm_client, worker, live_server, user,
                                                   settings, tmp_path):
    index = npm_client / "node_modules" / "remove.bg" / "dist" / "index.js"
    source = index.read_text()
    assert source.count(ENDPOINT) == 1
    index.write_text(source.replace(ENDPOINT, f"{live_server.url}/v1.0/removebg"))
    (npm_client / "run.js").write_text(SCRIPT)
    key = UserAPIKey.objects.create_key(user=user, name="npm client")[1]
    car = small_car()
    (tmp_path / "car.jpg").write_bytes(car)

    with LocalHTTPServer("127.0.0.1", {"/car.jpg": (200, {"Content-Type": "image/jpeg"},
                                                    car)}) as images:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{images.port}"]
        done = run_reaped(["node", "run.js", key, str(tmp_path / "car.jpg"),
                           base64.b64encode(car).decode(), images.url("/car.jpg")],
                          timeout=240, cwd=npm_client)
    assert done.returncode == 0, (done.stderr.decode()[-2000:], done.stdout.decode()[-500:])
    results = json.loads(done.stdout)

    for name in ("file", "base64", "url"):
        assert_cutout(results[name], (300, 225))
    assert results["file"]["creditsCharged"] == "0.25"  # regular is a preview size
    assert results["base64"]["creditsCharged"] == "0.25"  # the client's default: preview
    assert results["url"]["creditsCharged"] == "1"  # auto: the original size
    assert [r["path"] for r in images.requests] == ["/car.jpg"]
    tasks = Task.objects.filter(upload__owner=user)
    assert tasks.count() == 3 and set(tasks.values_list("status", flat=True)) == {"completed"}


# The PyPI client keeps its endpoint in a module constant, ``removebg.removebg.API_ENDPOINT``;
# this wrapper sets it and then calls the client's own methods, as a user's script would.
PYTHON_SCRIPT = r"""
import base64, json, sys

import requests
import removebg.removebg as module
from removebg import RemoveBg

base, key, path, url, blank = sys.argv[1:]
assert module.API_ENDPOINT == "https://api.remove.bg/v1.0/removebg"
module.API_ENDPOINT = base + "/v1.0/removebg"
client = RemoveBg(key, "errors.log")
client.remove_background_from_img_file(path)  # writes <path>_no_bg.png, size "regular"
client.remove_background_from_img_url(url, size="auto", new_file_name="url.png",
                                      bg_color="81d4fa77")
with open(path, "rb") as image:
    client.remove_background_from_base64_img(base64.b64encode(image.read()).decode(),
                                             new_file_name="b64.png")
try:
    client.remove_background_from_img_file(blank)
    refused = None
except requests.HTTPError as exc:
    refused = {"status": exc.response.status_code, "body": exc.response.json()}
print(json.dumps({"refused": refused}))
"""


@pytest.fixture
def pypi_client(tmp_path) -> Path:
    """``pip install removebg==0.04`` into a temporary venv; returns its python."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    made = run_reaped([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env)
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    python = venv / "bin" / "python"
    done = run_reaped([str(python), "-m", "pip", "install", "--quiet", "--cache-dir",
                       str(PIP_CACHE), PYPI_CLIENT], timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return python


def test_the_published_pypi_client_works_unchanged(pypi_client, worker, live_server, user,
                                                    settings, tmp_path):
    key = UserAPIKey.objects.create_key(user=user, name="pypi client")[1]
    car = small_car()
    (tmp_path / "car.jpg").write_bytes(car)
    Image.new("RGB", (300, 225), (255, 255, 255)).save(tmp_path / "blank.png")
    (tmp_path / "run.py").write_text(PYTHON_SCRIPT)

    with LocalHTTPServer("127.0.0.1", {"/car.jpg": (200, {"Content-Type": "image/jpeg"},
                                                    car)}) as images:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{images.port}"]
        done = run_reaped([str(pypi_client), "run.py", live_server.url, key,
                           str(tmp_path / "car.jpg"), images.url("/car.jpg"),
                           str(tmp_path / "blank.png")], timeout=240, cwd=tmp_path)
    assert done.returncode == 0, (done.stderr.decode()[-2000:], done.stdout.decode()[-500:])

    for name in ("car.jpg_no_bg.png", "b64.png"):
        image = Image.open(tmp_path / name)
        assert image.format == "PNG" and image.mode == "RGBA" and image.size == (300, 225)
        alpha = np.asarray(image)[:, :, 3]
        assert alpha[:5, :5].max() == 0 and alpha[105:120, 140:160].min() >= 250
    # bg_color with alpha (81d4fa77): the background is that colour, 0x77 opaque; the car solid.
    on_color = np.asarray(Image.open(tmp_path / "url.png"))
    assert on_color.shape == (225, 300, 4)
    assert on_color[2, 2].tolist() == [0x81, 0xD4, 0xFA, 0x77]
    assert on_color[105:120, 140:160, 3].min() >= 250
    # A blank image: remove.bg's unknown_foreground, not an empty PNG.
    refused = json.loads(done.stdout)["refused"]
    assert refused["status"] == 400
    assert refused["body"]["errors"][0]["code"] == "unknown_foreground"
    assert not (tmp_path / "blank.png_no_bg.png").exists()
    tasks = Task.objects.filter(upload__owner=user)
    assert sorted(tasks.values_list("status", flat=True)) == ["completed"] * 3 + ["failed"]
