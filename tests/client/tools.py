"""Helpers for the client's tests: run ``quickbg`` from ``client/`` (never installed into the
shared venv), images to feed it, and a misbehaving proxy in front of the live server."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.helpers import readme_block
from tests.images import FIXTURES, fixture_bytes
from tests.live import ROOT, run_reaped

CLIENT_DIR = ROOT / "client"


def client_env(url: str, key: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "QUICKBG"))}
    # XDG_CONFIG_HOME: a folder without quickbg/config.toml, so no user's config file is read.
    env.update(PYTHONPATH=str(CLIENT_DIR), QUICKBG_URL=url, QUICKBG_API_KEY=key,
               XDG_CONFIG_HOME=str(CLIENT_DIR / "no-config"), **extra)
    return env


def quickbg_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "quickbg_client", *args]


def quickbg(url: str, key: str, *args: str, timeout: float = 300, stdin: bytes | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m quickbg_client ARGS`` (PYTHONPATH=client) and capture its output."""
    if stdin is not None:
        proc = subprocess.run(quickbg_command(*args), input=stdin, capture_output=True,
                              env=client_env(url, key), timeout=timeout, cwd=cwd)
        return proc
    return run_reaped(quickbg_command(*args), timeout=timeout, env=client_env(url, key),
                      cwd=cwd)


def kill_mid_run(url: str, key: str, *args: str, when: Callable[[], bool]) -> None:
    """Start ``quickbg ARGS``, SIGKILL it (its whole process group) as soon as ``when()`` holds,
    and check that it was killed, not finished."""
    proc = subprocess.Popen(quickbg_command(*args), env=client_env(url, key),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not when() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "the client finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def json_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def small_jpeg(name: str, size=(240, 180), fmt: str = "JPEG") -> bytes:
    """A fixture photo, resized (the model's time does not depend on the size)."""
    image = Image.open(io.BytesIO(fixture_bytes(name))).convert("RGB").resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.jpg"))


def assert_cutout_png(path: Path) -> None:
    """A PNG with an alpha channel that holds both background (0) and subject (opaque)."""
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGBA", (path, image.format, image.mode)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha.min() == 0 and alpha.max() >= 250, (path, alpha.min(), alpha.max())


class FlakyProxy:
    """A proxy on 127.0.0.1 in front of the live server. The first upload POSTs get the
    answers in ``answers`` (status, headers); later requests are forwarded. Every request is
    recorded with its arrival time."""

    def __init__(self, upstream: str, answers: list[tuple[int, dict]]):
        self.upstream = upstream
        self.answers = list(answers)
        self.requests: list[tuple[float, str, str, int]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                arrived = time.monotonic()
                with owner.lock:
                    canned = None
                    if self.command == "POST" and self.path.startswith("/api/v1/uploads") \
                            and owner.answers:
                        canned = owner.answers.pop(0)
                if canned is not None:
                    status, headers = canned
                    payload = json.dumps({"detail": f"proxy says {status}"}).encode()
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    owner.requests.append((arrived, self.command, self.path, status))
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                answer = httpx.request(self.command, owner.upstream + self.path,
                                       headers=headers, content=body, timeout=120)
                owner.requests.append((arrived, self.command, self.path, answer.status_code))
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                            "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def uploads(self) -> list[tuple[float, int]]:
        return [(t, status) for t, method, path, status in self.requests
                if method == "POST" and path.startswith("/api/v1/uploads")]


def run_readme_client_block(tmp_path: Path, env: dict, prelude: str = "",
                            timeout: float = 900) -> subprocess.CompletedProcess:
    """README *Folders and scripts*' block as written, in bash (``prelude`` first: what the
    README has the reader do before it), in ``tmp_path`` holding a copy of ``client/`` and
    ``photos/`` (``car.jpg``, ``sub/girl.png``), with ``HOME`` in ``tmp_path/home`` (the block
    makes its venv there: ``pip install ./client``, a full install from PyPI). ``env`` adds
    the server's variables. ``python3`` is this interpreter (a venv made from it is based on
    the real one; it holds nothing of this venv's packages)."""
    shutil.copytree(CLIENT_DIR, tmp_path / "client",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "car.jpg").write_bytes(small_jpeg("car-1.jpg", size=(230, 170)))
    (tmp_path / "photos" / "sub" / "girl.png").write_bytes(
        small_jpeg("girl-1.jpg", size=(170, 230), fmt="PNG"))
    (tmp_path / "home").mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
           "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8", **env}
    script = prelude + "\n" + readme_block("client-start", "client-end")
    return run_reaped(["bash", "-euo", "pipefail", "-c", script], timeout=timeout, env=env,
                      cwd=tmp_path)


def assert_readme_client_outputs(tmp_path: Path, done: subprocess.CompletedProcess) -> None:
    """What the block's commands must have written and said (``run_readme_client_block``)."""
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-3000:]
    assert_cutout_png(tmp_path / "out" / "car.png")
    assert_cutout_png(tmp_path / "out" / "sub" / "girl.png")
    assert "2 done, 0 skipped, 0 failed" in stderr
    assert "0 done, 2 skipped, 0 failed" in stderr  # the second run uploads nothing
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()
             if line.startswith("{")]
    assert [(line["status"], line["output"]) for line in lines] == [("done", "out-webp/car.webp")]
    webp = Image.open(tmp_path / "out-webp" / "car.webp")
    assert webp.format == "WEBP"
    assert webp.convert("RGBA").getpixel((0, 0))[:3] == (255, 255, 255)
    assert not (tmp_path / "out-webp" / "sub").exists()  # --glob '*.jpg' left the PNG out
    # stdin: the same photo and options as out/car.png (which went in a batch with girl.png):
    # the server reuses that result, a task of its own (one more credit), no model run.
    assert (tmp_path / "cutout.png").read_bytes() == (tmp_path / "out" / "car.png").read_bytes()
    assert "credits used this month: 4" in done.stdout.decode()
    assert "isnet-general-use" in done.stdout.decode().split()
