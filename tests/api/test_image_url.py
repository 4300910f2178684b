"""``image_url`` on POST /api/v1/uploads: fetched in the request under removal.fetch's rules,
validated exactly like a file. Servers: 127.0.0.1 (allowlisted) and 127.0.0.2 (not)."""

from __future__ import annotations

import hashlib
import socket

import pytest

from removal import storage
from removal.models import Task, Upload
from tests.helpers import LocalHTTPServer, named
from tests.images import make_image

pytestmark = pytest.mark.django_db

IMAGE = make_image("PNG", (120, 90))


@pytest.fixture
def forbidden():
    with LocalHTTPServer("127.0.0.2", {"/cat.png": (200, {}, IMAGE)}) as server:
        yield server


@pytest.fixture
def allowed(settings, forbidden):
    routes = {
        "/images/cat%20photo.png": (200, {"Content-Type": "image/png"}, IMAGE),
        "/to-forbidden": (302, {"Location": forbidden.url("/cat.png")}, b""),
        "/text": (200, {"Content-Type": "image/png"}, b"not an image at all\n" * 10),
        "/tiny": (200, {}, make_image("PNG", (40, 40))),
        "/big": (200, {}, b"\x89PNG" + b"\0" * 3_000_000),
    }
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        yield server


def post_url(client, url, **extra):
    return client.post("/api/v1/uploads", {"image_url": url, **extra}, format="json")


def test_image_url_is_fetched_validated_and_queued(user, client_for, allowed, forbidden,
                                                   empty_queue,
                                                   django_capture_on_commit_callbacks):
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_url(client, allowed.url("/images/cat%20photo.png"), format="webp")
    assert response.status_code == 202, response.content
    upload = Upload.objects.get(pk=response.json()["upload_id"])
    assert (upload.format, upload.width, upload.height) == ("PNG", 120, 90)
    assert upload.sha256 == hashlib.sha256(IMAGE).hexdigest()
    assert upload.original_filename == "cat photo.png"
    assert storage.read(upload.original_key) == IMAGE
    task = Task.objects.get(pk=response.json()["task_id"])
    assert task.status == Task.Status.QUEUED and task.options["format"] == "webp"
    assert empty_queue.job_ids == [task.rq_job_id]
    assert [r["path"] for r in allowed.requests] == ["/images/cat%20photo.png"]
    assert forbidden.requests == []


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "0x7f000002", "[::ffff:127.0.0.2]"])
def test_image_url_to_a_loopback_server_not_allowlisted_is_400_never_contacted(
        user, client_for, allowed, forbidden, host, empty_queue):
    response = post_url(client_for(user), f"http://{host}:{forbidden.port}/cat.png")
    assert response.status_code == 400
    assert "resolves to a loopback address" in response.json()["detail"]
    assert forbidden.requests == []
    assert Upload.objects.count() == 0 and empty_queue.count == 0


def test_image_url_redirecting_to_a_forbidden_server_is_400_never_contacted(
        user, client_for, allowed, forbidden):
    response = post_url(client_for(user), allowed.url("/to-forbidden"))
    assert response.status_code == 400
    assert "resolves to a loopback address" in response.json()["detail"]
    assert [r["path"] for r in allowed.requests] == ["/to-forbidden"]
    assert forbidden.requests == []
    assert Upload.objects.count() == 0


@pytest.mark.parametrize("url, message", [
    ("http://169.254.169.254/latest/meta-data/", "resolves to a link-local address"),
    ("http://10.0.0.1/cat.png", "'10.0.0.1' resolves to a private address"),
    ("http://[fd00::1]/cat.png", "a private address"),
    ("file:///etc/passwd", "Only http and https"),
    ("http://me:secret@example.com/cat.png", "credentials"),
])
def test_image_url_refusals_are_400_before_any_connection(user, client_for, monkeypatch, url,
                                                          message):
    client = client_for(user)  # the token request is made before connections are forbidden
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: pytest.fail("a connection was attempted"))
    monkeypatch.setattr(socket.socket, "connect",
                        lambda *a, **k: pytest.fail("a connection was attempted"))
    response = post_url(client, url)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Upload.objects.count() == 0


@pytest.mark.parametrize("path, message", [
    ("/text", "File is not a valid image"),
    ("/tiny", "Image dimensions too small (min 50x50)"),
    ("/big", "The image at the URL is larger than the limit of 2097152 bytes"),
    ("/missing", "The image URL answered HTTP 404"),
])
def test_image_url_content_is_validated_like_an_upload(user, client_for, allowed, settings,
                                                       path, message):
    settings.QUICKBG_MAX_UPLOAD_MB = 2
    response = post_url(client_for(user), allowed.url(path))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)
    assert Upload.objects.count() == 0


def test_image_url_with_file_is_400(user, client_for, allowed):
    response = client_for(user).post("/api/v1/uploads", {
        "image_url": allowed.url("/images/cat%20photo.png"), "file": named(IMAGE, "a.png")},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == "Send exactly one of 'file', 's3_key' or 'image_url'."
    assert allowed.requests == []


def test_openapi_documents_image_url_and_webhooks(client_for, user):
    schema = client_for(user).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    upload = schema["components"]["schemas"]["UploadCreateRequest"]["properties"]
    assert {"image_url", "webhook_url"} <= set(upload)
    assert {"/api/v1/webhooks", "/api/v1/webhooks/{id}", "/api/v1/webhooks/secret"} <= set(
        schema["paths"])
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/webhooks/secret"])
    task = schema["components"]["schemas"]["Task"]["properties"]
    assert "cached" in task
