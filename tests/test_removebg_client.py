"""The published remove.bg npm client (``remove.bg@1.3.0``), unchanged but for its hard-coded
endpoint, against a live QuickBG (pytest-django's ``live_server``) and a real worker process
running the real model: its three calls (file, base64, URL) must work.

``npm install`` runs in a temporary folder, with npm's download cache kept in
``~/.cache/quickbg/npm`` so later runs do not download again.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
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
