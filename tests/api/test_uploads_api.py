"""POST /api/v1/uploads and the task and upload endpoints: validation, owner scoping (another
user's objects are 404), the upload throttle and the unfinished-task cap, server-chosen
storage keys, presign caps, retry."""

from __future__ import annotations

import pytest

from removal.models import Task, Upload
from tests.factories import make_task, make_upload
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db


def post_file(client, data: bytes, name: str):
    return client.post("/api/v1/uploads", {"file": named(data, name)}, format="multipart")


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * (12 * 1024 * 1024), "big.jpg",
         "File size (12.0MB) exceeds maximum (10MB)"),
        (make_image("JPEG", (40, 40)), "tiny.jpg", "Image dimensions too small (min 50x50)"),
        (make_image("PNG", (4097, 60)), "wide.png", "Image dimensions too large (max 4096x4096)"),
        (make_image("GIF", (100, 100)), "anim.gif", "Unsupported image format: GIF"),
        (b"just some text, not an image\n" * 10, "fake.jpg", "File is not a valid image"),
        (b"", "empty.jpg", "The uploaded file is empty"),
        (make_image("JPEG", (300, 200))[:-400], "cut.jpg",
         "The image file is truncated or corrupt"),
    ],
    ids=["12MB", "40x40", "too-wide", "gif", "text-named-jpg", "empty", "truncated-jpeg"],
)
def test_invalid_upload_is_400_with_message_and_no_rows(user, client_for, empty_queue, data,
                                                        name, message):
    response = post_file(client_for(user), data, name)
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(message)
    assert Task.objects.count() == 0
    assert Upload.objects.count() == 0
    assert empty_queue.count == 0


def test_upload_by_content_not_by_name(user, client_for):
    response = post_file(client_for(user), make_image("PNG", (80, 60)), "really-a-png.jpg")
    assert response.status_code == 202
    upload = Upload.objects.get(pk=response.json()["upload_id"])
    assert (upload.format, upload.width, upload.height) == ("PNG", 80, 60)


def test_upload_needs_exactly_one_of_file_or_s3_key(user, client_for):
    client = client_for(user)
    neither = client.post("/api/v1/uploads", {}, format="multipart")
    assert neither.status_code == 400
    assert neither.json()["detail"] == "Send exactly one of 'file', 's3_key' or 'image_url'."


def test_enqueue_waits_for_commit(user, client_for, empty_queue,
                                  django_capture_on_commit_callbacks):
    """django-rq enqueues only after the transaction commits: no job for a rolled-back row."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_file(client_for(user), make_image(), "a.jpg")
    assert response.status_code == 202
    assert empty_queue.count == 0  # not yet committed → nothing on the queue
    for callback in callbacks:
        callback()
    assert empty_queue.count == 1
    job = empty_queue.jobs[0]
    task = Task.objects.get(pk=response.json()["task_id"])
    assert job.id == task.rq_job_id
    assert job.args == [str(task.pk)]  # JSON serializer: the only argument is the task id


def test_lists_are_scoped_and_paginated(user, other_user, client_for):
    mine = [make_task(owner=user) for _ in range(3)]
    theirs = make_task(owner=other_user)
    client = client_for(user)
    page = client.get("/api/v1/tasks?page_size=2").json()
    assert "count" not in page  # cursor pagination: see tests/api/test_pagination.py
    assert len(page["results"]) == 2 and page["next"]
    ids = {row["task_id"] for row in page["results"]} | {
        row["task_id"] for row in client.get(page["next"]).json()["results"]
    }
    assert ids == {str(task.pk) for task in mine}
    uploads = client.get("/api/v1/uploads").json()
    assert str(theirs.upload_id) not in {row["upload_id"] for row in uploads["results"]}


def test_other_users_task_and_upload_are_404(user, other_user, client_for):
    theirs = make_task(owner=other_user, status=Task.Status.FAILED)
    client = client_for(user)
    for path in (f"/api/v1/tasks/{theirs.pk}", f"/api/v1/uploads/{theirs.upload_id}",
                 f"/api/v1/tasks/{theirs.pk}/result"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/api/v1/tasks/{theirs.pk}/retry").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Task.Status.FAILED


def test_task_fields(user, client_for):
    task = make_task(owner=user)
    body = client_for(user).get(f"/api/v1/tasks/{task.pk}").json()
    for field in ("task_id", "upload_id", "status", "progress", "result_url", "presigned_url",
                  "error_message", "processing_time", "created_at", "updated_at"):
        assert field in body
    assert body["status"] == "queued" and body["result_url"] is None


def test_owner_retries_failed_task(user, client_for, empty_queue,
                                   django_capture_on_commit_callbacks):
    task = make_task(owner=user, status=Task.Status.FAILED, error_message="boom")
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/tasks/{task.pk}/retry")
    assert response.status_code == 202
    task.refresh_from_db()
    assert (task.status, task.error_message) == (Task.Status.QUEUED, "")
    assert empty_queue.count == 1
    again = client.post(f"/api/v1/tasks/{task.pk}/retry")
    assert again.status_code == 409
    assert "Only failed tasks can be retried" in again.json()["detail"]


def test_other_users_objects_are_404_everywhere(user, other_user, client_for):
    theirs = make_task(owner=other_user, status=Task.Status.COMPLETED,
                       result_key="results/theirs.png")
    client = client_for(user)
    for path in (f"/api/v1/tasks/{theirs.pk}", f"/api/v1/tasks/{theirs.pk}/result",
                 f"/api/v1/uploads/{theirs.upload_id}"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/api/v1/tasks/{theirs.pk}/retry").status_code == 404
    assert client.get("/api/v1/tasks").json()["results"] == []
    assert client.get("/api/v1/uploads").json()["results"] == []
    assert client.delete(f"/api/v1/uploads/{theirs.upload_id}").status_code == 404


def test_upload_rate_is_throttled_with_retry_after(user, client_for, settings):
    settings.QUICKBG_UPLOAD_RATE = "2/hour"
    client = client_for(user)
    codes = [client.post("/api/v1/uploads", {"file": named(make_image())},
                         format="multipart").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    refused = client.post("/api/v1/uploads", {"file": named(make_image())}, format="multipart")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Task.objects.count() == 2


def test_unfinished_task_cap_is_429_with_retry_after(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    for _ in range(2):
        make_task(owner=user)
    response = client_for(user).post("/api/v1/uploads", {"file": named(make_image())},
                                     format="multipart")
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert "unfinished tasks (limit 2)" in response.json()["detail"]
    assert Upload.objects.count() == 2


def test_more_than_one_file_is_400(user, client_for):
    response = client_for(user).post(
        "/api/v1/uploads", {"file": [named(make_image()), named(make_image())]},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Send one image per request (field 'file')"
    assert Task.objects.count() == 0


def test_storage_keys_of_uploads_are_server_chosen(user, client_for):
    response = client_for(user).post(
        "/api/v1/uploads", {"file": named(make_image(), "../../etc/passwd.jpg")},
        format="multipart",
    )
    assert response.status_code == 202
    upload = Upload.objects.get(pk=response.json()["upload_id"])
    assert upload.original_key.startswith(f"originals/{user.pk}/{upload.pk}/")
    assert ".." not in upload.original_key
    assert make_upload  # factories imported for other tests in this module


@pytest.mark.django_db(transaction=True)
def test_presign_is_capped_per_user(user, client_for, s3, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    client = client_for(user)
    codes = [client.post("/api/v1/uploads/presign", {"filename": "a.jpg"},
                         format="json").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_json_upload_options_accept_booleans(user, client_for):
    from removal.models import DirectUpload

    key = f"incoming/{user.pk}/abc/photo.jpg"
    DirectUpload.objects.create(owner=user, key=key)
    response = client_for(user).post(
        "/api/v1/uploads", {"s3_key": key, "crop": False, "refine": True, "crop_margin": 4},
        format="json",
    )
    # The key was issued but nothing was uploaded: the options themselves were accepted.
    assert response.status_code == 404
    assert response.json()["detail"] == "Nothing has been uploaded to this s3_key yet"
