"""Helpers the tests import: free ports, subprocess environments, a private redis-server,
named in-memory files, JWTs, and a stand-in for the model. Fixtures are in ``conftest.py``;
image builders in ``tests.images``; model factories in ``tests.factories``."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from removal.pipeline.segment import INPUT_SIZE, TensorModel
from tests.factories import PASSWORD
from tests.process_guard import TEST_RUN_VAR, reap

__all__ = ["TEST_RUN_VAR", "reap"]  # re-exported: tests import process helpers from here


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(start: str, end: str, lang: str = "bash") -> str:
    """The fenced ``lang`` block between ``<!-- start -->`` and ``<!-- end -->`` in the README,
    as a user would copy it (the README tests run these verbatim)."""
    text = README.read_text()
    match = re.search(rf"<!-- {start} -->\s*```{lang}\n(.*?)```\s*<!-- {end} -->", text, re.S)
    assert match, f"README has no {start}/{end} block"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def named(data: bytes, name: str = "image.jpg") -> io.BytesIO:
    """An in-memory file with a name, as a multipart upload part."""
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def token_for(client: APIClient, user) -> str:
    response = client.post(
        "/api/v1/auth/token", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["access"]


def subprocess_env() -> dict:
    """Environment for a QuickBG process (worker, command) that must share this test's world:
    the test database, the test queue, the test media folder."""
    from django.db import connection

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env.update(
        QUICKBG_TEST_RUN=os.environ.get(TEST_RUN_VAR, str(os.getpid())),
        DJANGO_SETTINGS_MODULE="quickbg.settings",
        QUICKBG_QUEUE=django_settings.QUICKBG_QUEUE,
        QUICKBG_MEDIA_ROOT=str(
            django_settings.STORAGES["default"].get("OPTIONS", {}).get("location")
            or django_settings.MEDIA_ROOT
        ),
        REDIS_URL=django_settings.RQ_QUEUES[django_settings.QUICKBG_QUEUE]["URL"],
        QUICKBG_ORT_THREADS=str(django_settings.QUICKBG_ORT_THREADS),
    )
    return env


class RedisServer:
    """A redis-server of the test's own on a free loopback port, without persistence, so a
    test can stop it, restart it empty, or FLUSHALL it without touching anyone else's data."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.binary = shutil.which("redis-server")
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc:
            reap(self.proc, first_signal=signal.SIGKILL)

    def restart_empty(self) -> None:
        self.stop()
        self.start()


class DiscModel(TensorModel):
    """Stands in for ISNet where a test is about the code around the model: its raw output is a
    disc (value 1.0) on 0.0, centred at ``centre`` (fractions of the frame), radius ``radius``;
    with ``edge``, its rim fades from 1 to 0 over that width (fractional alpha to work on)."""

    def __init__(self, centre=(0.5, 0.5), radius=0.25, empty=False, edge=0.0):
        yy, xx = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE].astype(np.float32) / INPUT_SIZE
        disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
        self.output = np.zeros((1, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        if edge:  # a soft rim: a linear ramp ``edge`` wide (a fraction of the frame)
            distance = np.sqrt((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2)
            self.output[0, 0] = np.clip((radius - distance) / edge + 0.5, 0, 1)
        elif not empty:
            self.output[0, 0][disc] = 1.0
        self.inputs: list[np.ndarray] = []

    def run(self, tensor: np.ndarray, timeout: float | None = None) -> np.ndarray:
        self.inputs.append(tensor)
        return self.output.copy()


class LocalHTTPServer:
    """A threaded HTTP server on a loopback address (127.0.0.1 or 127.0.0.2, never another) that
    records every request it gets, so a test can prove a server was, or was never, contacted.

    ``routes`` maps a path to ``(status, headers, body)`` or to a callable taking the handler and
    returning that triple (it may sleep, or change its answer between calls). Use as a context
    manager: the server thread is shut down and the socket closed on exit, also on failure."""

    def __init__(self, host: str = "127.0.0.1", routes: dict | None = None, tls=None):
        import http.server
        import threading

        assert host in ("127.0.0.1", "127.0.0.2"), "tests use loopback servers only"
        self.routes = dict(routes or {})
        self.requests: list[dict] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers), "body": body})
                route = owner.routes.get(self.path.split("?")[0], (404, {}, b"not found"))
                status, headers, payload = route(self) if callable(route) else route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:  # the client hung up (a cut-off body): expected in some tests
                    pass

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # an ssl.SSLContext (server side): serve HTTPS instead
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.host, self.port = host, self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


def deliver_all() -> None:
    """A real worker in burst mode on the webhooks queue only (no model needed)."""
    call_command("run_worker", "--burst", "--webhooks-only")


class Receiver:
    """A webhook receiver: verifies each request with standardwebhooks and answers from
    ``answers`` in turn (the last one repeats)."""

    def __init__(self, secret: str, answers=(200,), delay: float = 0.0):
        self.secret = secret  # the whsec_ secret to verify with
        self.answers = list(answers)
        self.delay = delay
        self.verified: list[dict] = []
        self.server = LocalHTTPServer("127.0.0.1", {"/hook": self._handle, "/task": self._handle})

    def _handle(self, handler):
        request = self.server.requests[-1]
        try:
            payload = Webhook(self.secret).verify(request["body"], request["headers"])
        except WebhookVerificationError as exc:
            return 400, {}, f"bad signature: {exc}".encode()
        self.verified.append(payload)
        time.sleep(self.delay)
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return status, {}, b"boom" if status >= 500 else b"ok"

    @property
    def requests(self):
        return self.server.requests

    def url(self, path="/hook"):
        return self.server.url(path)


class TricklingServer:
    """A loopback peer that accepts, reads the request, then sends its answer one byte every
    ``interval`` seconds (each byte just in time for any per-read timeout), for up to
    ``lasting`` seconds, then hangs up (so that a client without an overall deadline fails the
    test in seconds instead of hanging it)."""

    def __init__(self, answer: bytes, interval: float, lasting: float = 4.0):
        import socket
        import threading

        self._answer, self._interval, self._lasting = answer, interval, lasting
        self._listener = socket.create_server(("127.0.0.1", 0))  # loopback only
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.recv(65536)
                until = time.monotonic() + self._lasting
                for byte in self._answer * 1000:
                    if self._stop.wait(self._interval) or time.monotonic() > until:
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
