"""Helpers for the client's tests: run ``quickbg`` from ``client/`` (never installed into the
shared venv), images to feed it, and a misbehaving proxy in front of the live server."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

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
