"""Result reuse: the same user's same image bytes, effective options, model and weights get the
stored result at once (``cached: true``, no job); never across users; reprocess and retry
recompute; QUICKBG_REUSE_RESULTS=false turns it off."""

from __future__ import annotations

import hashlib

import pytest
from django.utils import timezone

from removal import modelstore, storage
from removal.models import Task, WebhookDelivery, WebhookEndpoint
from removal.pipeline.options import Options
from tests.factories import make_task, make_upload
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db

IMAGE = make_image("JPEG", (120, 90))
RESULT = b"\x89PNG\r\n\x1a\nthe earlier result"


def earlier_result(owner, *, data=IMAGE, options=None, model_sha256=None, **fields) -> Task:
    """A completed task as a worker leaves it, over ``data``."""
    upload = make_upload(owner=owner, sha256=hashlib.sha256(data).hexdigest())
    spec = modelstore.MODELS[modelstore.DEFAULT_MODEL]
    task = make_task(
        upload=upload, status=Task.Status.COMPLETED, progress=100, finished_at=timezone.now(),
        options=Options.parse(options or {}).to_dict(), processing_time=1.5,
        metrics={"model_sha256": model_sha256 or spec.sha256, "confidence": 0.97}, **fields,
    )
    key = storage.write(storage.result_key(task_id=task.pk), RESULT)
    Task.objects.filter(pk=task.pk).update(result_key=key)
    task.refresh_from_db()
    return task


def upload(client, data=IMAGE, **fields):
    return client.post("/api/v1/uploads", {"file": named(data, "again.jpg"), **fields},
                       format="multipart")


def test_identical_upload_completes_at_once_from_a_copy(user, client_for, empty_queue,
                                                        django_capture_on_commit_callbacks):
    source = earlier_result(user)
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client)
    assert response.status_code == 202
    assert response.json()["status"] == "completed"
    assert response.json()["message"] == "Result reused from an identical earlier task"
    assert empty_queue.count == 0  # no job: no model run
    shown = client.get(f"/api/v1/tasks/{response.json()['task_id']}").json()
    assert shown["cached"] is True and shown["status"] == "completed"
    assert shown["processing_time"] == 0.0 and shown["metrics"]["cached_from"] == str(source.pk)
    new = Task.objects.get(pk=shown["task_id"])
    assert new.result_key != source.result_key and storage.read(new.result_key) == RESULT
    # A copy, not a pointer: deleting the earlier result leaves this one whole.
    storage.delete_quietly(source.result_key)
    download = client.get(shown["presigned_url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == RESULT
    assert client.get(f"/api/v1/tasks/{source.pk}").json()["cached"] is False


def test_never_across_users(user, other_user, client_for, empty_queue,
                            django_capture_on_commit_callbacks):
    earlier_result(other_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for(user))
    assert response.json()["status"] == "queued"
    assert Task.objects.get(pk=response.json()["task_id"]).cached is False
    assert empty_queue.count == 1


@pytest.mark.parametrize("change", ["options", "bytes", "weights", "setting-off", "no-result"])
def test_anything_different_recomputes(user, client_for, settings, empty_queue, change,
                                       django_capture_on_commit_callbacks):
    source = earlier_result(user, model_sha256="0" * 64 if change == "weights" else None)
    fields, data = {}, IMAGE
    if change == "options":
        fields = {"bg_color": "#ffffff"}
    elif change == "bytes":
        data = make_image("JPEG", (120, 90), color=(10, 200, 10))
    elif change == "setting-off":
        settings.QUICKBG_REUSE_RESULTS = False
    elif change == "no-result":
        storage.delete_quietly(source.result_key)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for(user), data, **fields)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert Task.objects.get(pk=response.json()["task_id"]).cached is False
    assert empty_queue.count == 1


def test_equivalent_options_spelled_differently_are_reused(user, client_for):
    earlier_result(user, options={"crop": True, "crop_margin": "10"})
    response = upload(client_for(user), crop="true")  # the defaults, said differently
    assert response.json()["status"] == "completed"


def test_reprocess_and_retry_always_recompute(user, client_for, empty_queue,
                                              django_capture_on_commit_callbacks):
    from removal.services import tasks

    source = earlier_result(user)
    failed = make_task(upload=source.upload, status=Task.Status.FAILED,
                       options=source.options, error_message="boom")
    with django_capture_on_commit_callbacks(execute=True):
        retried = client_for(user).post(f"/api/v1/tasks/{failed.pk}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    assert retried.json()["cached"] is False
    Task.objects.filter(pk=failed.pk).update(status=Task.Status.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        new = tasks.task_reprocess(task=source)
    assert new.status == Task.Status.QUEUED and new.cached is False
    assert empty_queue.count == 2


def test_cached_task_sends_its_completed_event(user, client_for, settings,
                                               django_capture_on_commit_callbacks):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.1:9"]
    WebhookEndpoint.objects.create(owner=user, url="http://127.0.0.1:9/hook")
    earlier_result(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for(user))
    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.event_type == "task.completed"
    assert delivery.data["task_id"] == response.json()["task_id"]
    assert delivery.data["cached"] is True
