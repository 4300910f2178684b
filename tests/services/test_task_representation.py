"""``representation.task_representation``: a webhook event's ``data`` is the task exactly as
``GET /api/v1/tasks/{id}`` shows it, built without DRF (links absolute, signed afresh)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from removal import storage
from removal.models import Task, WebhookDelivery
from removal.representation import task_representation
from removal.services import webhooks
from tests.factories import make_task, make_upload

pytestmark = pytest.mark.django_db

LINKS = ("result_url", "presigned_url")


def _completed(owner) -> Task:
    upload = make_upload(owner=owner, original_filename="Holiday Photo.jpeg")
    now = timezone.now()
    task = make_task(upload=upload, status=Task.Status.COMPLETED, progress=100, attempts=1,
                     processing_time=1.25, options={"format": "webp", "crop": False},
                     metrics={"confidence": 0.97, "foreground": {"top": 1, "left": 2,
                                                                  "width": 3, "height": 4}},
                     started_at=now, finished_at=now)
    key = storage.write(storage.result_key(task_id=task.pk, extension="webp"), b"RIFF webp")
    Task.objects.filter(pk=task.pk).update(result_key=key)
    return Task.objects.select_related("upload").get(pk=task.pk)


def _as_shown(client, task) -> dict:
    response = client.get(f"/api/v1/tasks/{task.pk}")
    assert response.status_code == 200
    return response.json()


def test_a_completed_task_is_the_endpoints_representation(user, client_for, settings):
    settings.QUICKBG_PUBLIC_URL = "https://quickbg.example"
    client = client_for(user)
    task = _completed(user)
    shown, data = _as_shown(client, task), task_representation(task)

    assert list(data) == list(shown)
    assert {k: v for k, v in data.items() if k not in LINKS} == {
        k: v for k, v in shown.items() if k not in LINKS}
    assert data["confidence"] == 0.97 and data["foreground"]["width"] == 3
    assert data["result_url"] == shown["result_url"].replace(
        "http://testserver", "https://quickbg.example")
    assert data["result_url"].endswith(f"/api/v1/tasks/{task.pk}/result")
    for url in (data["presigned_url"], shown["presigned_url"]):  # both links fetch the result
        path = url.removeprefix("https://quickbg.example").removeprefix("http://testserver")
        download = client.get(path)
        assert download.status_code == 200 and download["Content-Type"] == "image/webp"
        assert "Holiday_Photo-nobg.webp" in download["Content-Disposition"]
        assert b"".join(download.streaming_content) == b"RIFF webp"


def test_a_failed_task_is_the_endpoints_representation(user, client_for):
    task = make_task(owner=user, status=Task.Status.FAILED, error_message="Invalid option x",
                     finished_at=timezone.now())
    task = Task.objects.select_related("upload").get(pk=task.pk)
    data = task_representation(task)
    assert data == _as_shown(client_for(user), task)
    assert data["result_url"] is None and data["foreground"] is None


def test_the_task_event_carries_the_representation(user, client_for, settings):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.1:9"]
    task = _completed(user)
    Task.objects.filter(pk=task.pk).update(webhook_url="http://127.0.0.1:9/hook")
    webhooks.task_event_emit(task_id=task.pk)
    event = WebhookDelivery.objects.get(task=task)
    shown = _as_shown(client_for(user), task)
    assert event.event_type == "task.completed"
    assert {k: v for k, v in event.data.items() if k not in LINKS} == {
        k: v for k, v in shown.items() if k not in LINKS}
