"""Idempotency-Key on POST /api/v1/uploads (removal.api.idempotency): the first answer replayed,
per user, a mismatch on another body, a failed or crashed first request frees the key."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from removal.models import IdempotencyKey, Task, Upload
from tests.helpers import named, subprocess_env
from tests.images import make_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_idempotency_key_replays_the_first_response(user, client_for):
    client = client_for(user)
    data = make_image()
    first = client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert (Upload.objects.count(), Task.objects.count()) == (1, 1)
    other = client.post("/api/v1/uploads", {"file": named(make_image(color=(1, 2, 3)))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    assert Task.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_idempotency_keys_are_per_user_and_expire(user, other_user, client_for):
    data = make_image()
    mine = client_for(user).post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                                 HTTP_IDEMPOTENCY_KEY="k")
    theirs = client_for(other_user).post("/api/v1/uploads", {"file": named(data)},
                                         format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert mine.json()["task_id"] != theirs.json()["task_id"]
    IdempotencyKey.objects.update(created_at=mine_time_minus_a_day())
    later = client_for(user).post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                                  HTTP_IDEMPOTENCY_KEY="k")
    assert later.status_code == 202 and later.json()["task_id"] != mine.json()["task_id"]


def mine_time_minus_a_day():
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(hours=25)


@pytest.mark.django_db(transaction=True)
def test_the_same_key_with_another_webhook_or_image_url_is_a_mismatch(user, client_for,
                                                                     settings):
    """Every field that changes the request is part of it: a second webhook_url or image_url
    under the same key is a 422, never a replay of the first answer."""
    from tests.helpers import LocalHTTPServer

    client = client_for(user)
    image = make_image()
    routes = {"/a.png": (200, {"Content-Type": "image/png"}, image),
              "/b.png": (200, {"Content-Type": "image/png"}, image)}
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        first = client.post("/api/v1/uploads", {"file": named(image),
                                                "webhook_url": server.url("/hook-1")},
                            format="multipart", HTTP_IDEMPOTENCY_KEY="hook-key")
        moved = client.post("/api/v1/uploads", {"file": named(image),
                                                "webhook_url": server.url("/hook-2")},
                            format="multipart", HTTP_IDEMPOTENCY_KEY="hook-key")
        by_url = client.post("/api/v1/uploads", {"image_url": server.url("/a.png")},
                             format="multipart", HTTP_IDEMPOTENCY_KEY="url-key")
        other_url = client.post("/api/v1/uploads", {"image_url": server.url("/b.png")},
                                format="multipart", HTTP_IDEMPOTENCY_KEY="url-key")
        fetched = [r["path"] for r in server.requests]
    assert first.status_code == 202 and by_url.status_code == 202
    for refused in (moved, other_url):
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "This Idempotency-Key was already used with a different request body"}
    assert fetched == ["/a.png"]  # the refused request fetched nothing
    assert Task.objects.count() == 2
    assert set(Task.objects.values_list("webhook_url", flat=True)) == {server.url("/hook-1"), ""}


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_request_frees_the_idempotency_key(user, client_for):
    client = client_for(user)
    bad = client.post("/api/v1/uploads", {"file": named(b"not an image")}, format="multipart",
                      HTTP_IDEMPOTENCY_KEY="retry-me")
    assert bad.status_code == 400
    assert IdempotencyKey.objects.count() == 0


CRASH_MID_UPLOAD = """
import os, signal, sys
import django
django.setup()
from accounts.models import User
from removal.api import idempotency
owner = User.objects.get(pk=int(sys.argv[1]))
# The placeholder is committed, then the process dies before any answer is stored.
idempotency.replay_or_perform(owner=owner, key=sys.argv[2], request_hash=sys.argv[3],
                              perform=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


@pytest.mark.django_db(transaction=True)
def test_a_crashed_request_leaves_a_key_that_a_retry_takes_over_later(user, client_for,
                                                                       settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from removal.api.idempotency import request_hash
    from removal.pipeline.options import Options

    data = make_image()
    digest = request_hash({"file": SimpleUploadedFile("image.jpg", data),
                           "options": Options.parse({}).to_dict()})
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MID_UPLOAD, str(user.pk), "crash-key", digest],
        cwd=ROOT, env=subprocess_env(), capture_output=True, timeout=120,
        start_new_session=True,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    placeholder = IdempotencyKey.objects.get(owner=user, key="crash-key")
    assert placeholder.response_status is None

    client = client_for(user)

    def post():
        return client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                           HTTP_IDEMPOTENCY_KEY="crash-key")

    fresh = post()  # the request might still be running: still a conflict
    assert fresh.status_code == 409
    assert fresh.json()["detail"] == "A request with this Idempotency-Key is still in progress"

    settings.QUICKBG_IDEMPOTENCY_PENDING_SECONDS = 120
    IdempotencyKey.objects.filter(pk=placeholder.pk).update(
        created_at=placeholder.created_at - timedelta(seconds=121))
    taken_over = post()
    assert taken_over.status_code == 202, taken_over.content
    task_id = taken_over.json()["task_id"]
    assert Task.objects.filter(pk=task_id, upload__owner=user).count() == 1
    replay = post()
    assert replay.status_code == 202 and replay.json()["task_id"] == task_id
    assert Task.objects.filter(upload__owner=user).count() == 1
