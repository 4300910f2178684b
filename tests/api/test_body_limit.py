"""Issue 17: request bodies over ``QUICKBG_MAX_BODY_MB`` are refused before they are read, on
every endpoint (the unauthenticated ones included); chunked bodies are cut off while streaming,
and no temporary file is left behind."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from tests.helpers import free_port, named, reap, subprocess_env, token_for

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict]:
    """Read one HTTP response (status and JSON body) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    chunked = b"transfer-encoding: chunked" in head.lower()
    while True:  # until the JSON body is whole (Django's dev server keeps the connection)
        try:
            if chunked:
                if not body.endswith(b"0\r\n\r\n"):
                    raise ValueError("chunked body not complete")
                return status, json.loads(dechunk(body))
            return status, json.loads(body)
        except ValueError:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"no JSON answer: {data[:300]!r}") from None
            body += chunk


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2:]


def post_headers(path: str, port: int, headers: dict) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize("path,content_type", [
    ("/api/v1/auth/token", "application/json"),
    ("/api/v1/uploads", "multipart/form-data; boundary=x"),
    ("/admin/login/", "application/x-www-form-urlencoded"),
])
@pytest.mark.django_db(transaction=True)
def test_a_big_content_length_is_413_before_the_body_is_read(path, content_type, live_server):
    port = int(live_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Declares 50 MB and sends none of it: an answer can only come without reading.
        sock.sendall(post_headers(path, port, {"Content-Type": content_type,
                                               "Content-Length": str(50 * MB)}))
        status, body = read_response(sock)
    assert status == 413
    assert body == {"detail": "Request body too large (maximum 15MB)"}


@pytest.mark.django_db
def test_a_file_just_over_the_limit_still_gets_the_validators_message(user, client_for):
    data = b"\xff\xd8\xff\xe0" + b"\0" * int(12.5 * MB - 4)
    response = client_for(user).post("/api/v1/uploads", {"file": named(data, "big.jpg")},
                                     format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == "File size (12.5MB) exceeds maximum (10MB)"


# --- chunked bodies, through gunicorn (the production server, which decodes chunks) ---------


@pytest.fixture
def gunicorn(tmp_path):
    """The Procfile's web server on the test database, with a private temp folder."""
    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = subprocess_env() | {"TMPDIR": str(tmp), "DEBUG": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "quickbg.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield port, tmp
    finally:
        reap(proc, first_signal=signal.SIGKILL)


def send_chunked(port: int, path: str, headers: dict, preamble: bytes,
                 total: int) -> tuple[int, dict, int]:
    """Stream ``preamble`` then zeros, 64 KB chunks, up to ``total`` bytes, watching for an
    early answer. Returns (status, body, bytes sent before the answer came)."""
    sent = 0
    filler = b"\0" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post_headers(path, port, {**headers, "Transfer-Encoding": "chunked"}))
        try:
            for piece in [preamble] + [filler] * (total // len(filler)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading: the answer is in our buffer
        status, body = read_response(sock)
    return status, body, sent


@pytest.mark.django_db(transaction=True)
def test_a_chunked_upload_over_the_limit_is_cut_off_without_a_temp_file(user, gunicorn):
    port, tmp = gunicorn
    token = token_for(APIClient(), user)
    preamble = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0")
    status, body, sent = send_chunked(
        port, "/api/v1/uploads",
        {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=x"},
        preamble, total=60 * MB,
    )
    assert status == 413, body
    assert body == {"detail": "Request body too large (maximum 15MB)"}
    assert sent < 30 * MB  # cut off near the limit, not after the whole 60 MB
    time.sleep(0.5)
    assert list(tmp.iterdir()) == []  # no spooled upload left behind


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_to_an_unauthenticated_endpoint_is_cut_off(gunicorn):
    port, _ = gunicorn
    status, body, sent = send_chunked(port, "/api/v1/auth/token",
                                      {"Content-Type": "application/json"},
                                      b'{"username": "', total=60 * MB)
    assert status == 413, body
    assert body == {"detail": "Request body too large (maximum 15MB)"}
    assert sent < 30 * MB


@pytest.mark.django_db(transaction=True)
def test_a_chunked_upload_under_the_limit_is_accepted(user, gunicorn):
    from tests.images import make_image

    port, tmp = gunicorn
    token = token_for(APIClient(), user)
    body = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + make_image("PNG", (300, 200)) + b"\r\n--x--\r\n")
    status, answer, _ = send_chunked(
        port, "/api/v1/uploads",
        {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=x"},
        body, total=0,
    )
    assert status == 202, answer
    assert answer["status"] == "queued"
    assert list(tmp.iterdir()) == []


def test_the_upload_handler_stops_a_file_part_at_the_limit_and_deletes_its_spool(
        settings, tmp_path, rf):
    """Without the middleware (a request factory runs none): the handler alone."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from removal.api.errors import BodyTooLarge

    settings.QUICKBG_MAX_BODY_MB = 1
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # spool to disk early
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    request = rf.post("/api/v1/uploads",
                      {"file": SimpleUploadedFile("big.jpg", b"\0" * (3 * MB))})
    with pytest.raises(BodyTooLarge, match=r"Request body too large \(maximum 1MB\)"):
        request.FILES  # noqa: B018 - parsing the body is the point
    assert list(tmp_path.iterdir()) == []
    small = rf.post("/api/v1/uploads", {"file": SimpleUploadedFile("ok.jpg", b"\1" * (MB // 2))})
    assert small.FILES["file"].read() == b"\1" * (MB // 2)


def test_the_batch_endpoint_takes_a_batch_sized_body_and_no_more(settings):
    """A batch request may be as large as QUICKBG_MAX_BATCH_MB (plus the margin); every other
    endpoint keeps the single-upload body limit."""
    from removal.api import limits

    settings.QUICKBG_MAX_BODY_MB = 15
    settings.QUICKBG_MAX_BATCH_MB = 200
    factory = RequestFactory()
    batch = factory.post("/api/v1/batches", content_type="multipart/form-data; boundary=x")
    upload = factory.post("/api/v1/uploads", content_type="multipart/form-data; boundary=x")
    assert limits.body_limit(batch) == 205 * 1024 * 1024
    assert limits.body_limit(upload) == 15 * 1024 * 1024
    for request, expected in ((batch, None), (upload, 413)):
        request.META["CONTENT_LENGTH"] = str(100 * 1024 * 1024)
        response = limits.BodyLimitMiddleware(lambda r: None)(request)
        assert (response.status_code if response is not None else None) == expected
