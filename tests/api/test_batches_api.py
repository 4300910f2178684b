"""/api/v1/batches: creation from files and zips, limits, quotas, status, download, retry."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from PIL import Image

from removal import queue, storage
from removal.models import Batch, Task, Upload
from removal.services import batches as batch_services
from tests.factories import make_task
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db


def batch_queue():
    return queue.get_batch_queue()


def post_files(client, files: list[tuple[bytes, str]], **extra):
    data = {"files": [named(content, name) for content, name in files], **extra}
    return client.post("/api/v1/batches", data, format="multipart")


def test_a_batch_takes_decontaminate_for_every_member(user, client_for):
    files = [(make_image("JPEG", (120, 90)), f"photo-{n}.jpg") for n in range(2)]
    response = post_files(client_for(user), files, decontaminate="false")
    assert response.status_code == 202, response.content
    batch = Batch.objects.get(pk=response.json()["batch_id"])
    assert batch.options["decontaminate"] is False
    assert [t.options["decontaminate"] for t in Task.objects.filter(batch=batch)] == [False] * 2
    bad = post_files(client_for(user), files, decontaminate="2")
    assert bad.status_code == 400
    assert bad.json()["detail"] == "decontaminate: must be true or false"


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def post_archive(client, content: bytes, name="images.zip", **extra):
    return client.post("/api/v1/batches", {"archive": named(content, name), **extra},
                       format="multipart")


def stored_originals(settings, user) -> list[str]:
    root = os.path.join(settings.MEDIA_ROOT, "originals", str(user.pk))
    return [name for _, _, files in os.walk(root) for name in files]


def finish(task: Task, *, status=Task.Status.COMPLETED, result: bytes | None = None,
           error: str = "") -> None:
    """Record an outcome the way a worker does (result stored, row updated)."""
    key = ""
    if result is not None:
        key = storage.write(storage.result_key(task_id=task.id), result)
    Task.objects.filter(pk=task.pk).update(status=status, result_key=key, progress=100,
                                           error_message=error)


def test_batch_of_files_is_202_with_tasks_on_the_batch_queue(
    user, client_for, empty_queue, django_capture_on_commit_callbacks
):
    files = [(make_image("JPEG", (120, 90)), f"photo-{n}.jpg") for n in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_files(client_for(user), files, format="webp", model="isnet-general-use")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["count"] == 3 and len(body["task_ids"]) == 3 and body["rejected"] == []
    batch = Batch.objects.get(pk=body["batch_id"])
    assert (batch.owner, batch.size, batch.options["format"]) == (user, 3, "webp")
    tasks = Task.objects.filter(batch=batch)
    assert sorted(str(t.id) for t in tasks) == sorted(body["task_ids"])
    assert {t.upload.original_filename for t in tasks} == {f"photo-{n}.jpg" for n in range(3)}
    assert all(storage.exists(t.upload.original_key) for t in tasks)
    # Batch members wait below the interactive queue.
    assert empty_queue.count == 0
    assert sorted(batch_queue().job_ids) == sorted(t.rq_job_id for t in tasks)


def test_unacceptable_members_are_rejected_with_the_single_upload_messages(user, client_for):
    files = [
        (make_image("JPEG", (120, 90)), "good.jpg"),
        (make_image("JPEG", (40, 40)), "tiny.jpg"),
        (make_image("GIF", (100, 100)), "anim.gif"),
        (b"", "empty.jpg"),
    ]
    response = post_files(client_for(user), files)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["count"] == 1
    assert body["rejected"] == [
        {"name": "tiny.jpg", "detail": "Image dimensions too small (min 50x50)"},
        {"name": "anim.gif", "detail": "Unsupported image format: GIF. Supported formats: "
                                       "JPEG, PNG, WEBP, BMP"},
        {"name": "empty.jpg", "detail": "The uploaded file is empty"},
    ]
    assert Upload.objects.count() == 1


def test_batch_with_no_acceptable_member_is_400_and_stores_nothing(user, client_for,
                                                                   settings):
    response = post_files(client_for(user), [(b"not an image" * 10, "a.jpg"),
                                             (make_image("JPEG", (40, 40)), "b.jpg")])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("No acceptable image in the batch (a.jpg: File "
                                                "is not a valid image")
    assert Batch.objects.count() == 0 and Upload.objects.count() == 0
    assert stored_originals(settings, user) == []


def test_a_failed_batch_removes_the_originals_it_stored(user, client_for, settings,
                                                        monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    files = [(make_image("JPEG", (120, 90)), f"p{n}.jpg") for n in range(3)]
    written = []
    real_write = batch_services.storage.write
    monkeypatch.setattr(batch_services.storage, "write",
                        lambda key, data, **kw: written.append(key) or real_write(key, data, **kw))
    monkeypatch.setattr(batch_services, "task_enqueue", broken)
    with pytest.raises(RuntimeError):
        post_files(client_for(user), files)
    assert Batch.objects.count() == 0 and Upload.objects.count() == 0
    assert Task.objects.count() == 0
    assert len(written) == 3  # they were stored, then removed
    assert stored_originals(settings, user) == []


def test_too_many_files_is_400(user, client_for, settings):
    settings.QUICKBG_MAX_BATCH_FILES = 3
    files = [(make_image("JPEG", (60, 60)), f"{n}.jpg") for n in range(4)]
    response = post_files(client_for(user), files)
    assert response.status_code == 400
    assert response.json()["detail"] == "Too many files in one batch: 4 (maximum 3)"
    assert Upload.objects.count() == 0


def test_total_size_over_the_batch_limit_is_400(user, client_for, settings):
    settings.QUICKBG_MAX_BATCH_MB = 0.01  # ~10 KB
    files = [(make_image("PNG", (200, 200), mode="RGB"), f"{n}.png") for n in range(3)]
    files = [(os.urandom(6000) + data, name) for data, name in files]
    response = post_files(client_for(user), files)
    assert response.status_code == 400
    assert "exceeds the maximum total size (0.01MB)" in response.json()["detail"]


def test_send_files_or_archive_not_both(user, client_for):
    client = client_for(user)
    image = make_image("JPEG", (60, 60))
    both = client.post("/api/v1/batches", {"files": [named(image, "a.jpg")],
                                           "archive": named(zip_of({"b.jpg": image}), "z.zip")},
                       format="multipart")
    neither = client.post("/api/v1/batches", {}, format="multipart")
    assert both.status_code == neither.status_code == 400
    assert "either repeated 'files' parts or one 'archive'" in both.json()["detail"]


def test_a_100_file_batch_is_not_refused_by_the_single_upload_cap(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 20
    image = make_image("JPEG", (60, 60))
    response = post_files(client_for(user), [(image, f"{n}.jpg") for n in range(100)])
    assert response.status_code == 202, response.content
    assert response.json()["count"] == 100
    # ...and single uploads still work beside it (the batch has its own cap).
    single = client_for(user).post("/api/v1/uploads", {"file": named(image, "x.jpg")},
                                   format="multipart")
    assert single.status_code == 202


def test_many_batches_cannot_dodge_the_batch_member_cap(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_BATCH_TASKS = 5
    image = make_image("JPEG", (60, 60))
    client = client_for(user)
    first = post_files(client, [(image, f"{n}.jpg") for n in range(3)])
    second = post_files(client, [(image, f"{n}.jpg") for n in range(3)])
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["detail"] == ("You have 3 unfinished batch images and this adds 3 "
                                       "(limit 5); wait for some to finish")
    assert second["Retry-After"] == "60"
    assert Batch.objects.count() == 1 and Upload.objects.count() == 3


def test_a_batch_is_one_request_for_the_upload_throttle(user, client_for, settings):
    from django.core.cache import cache

    # Only this user's throttle history: never cache.clear() (FLUSHDB on the shared Redis).
    key = f"throttle_uploads_{user.pk}"
    cache.delete(key)
    settings.QUICKBG_UPLOAD_RATE = "2/min"
    image = make_image("JPEG", (60, 60))
    client = client_for(user)
    try:
        codes = [post_files(client, [(image, f"{n}.jpg") for n in range(10)]).status_code
                 for _ in range(3)]
    finally:
        cache.delete(key)
    assert codes == [202, 202, 429]
    assert Upload.objects.count() == 20


def test_archive_batch_reads_images_and_rejects_bad_members(user, client_for):
    image = make_image("PNG", (80, 60))
    archive = zip_of({
        "shoes/red.png": image,
        "../../etc/evil.png": image,
        "notes.txt": b"hello, not an image\n" * 5,
        "inner.zip": zip_of({"x.png": image}),
        "folder/": b"",
    })
    response = post_archive(client_for(user), archive)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["count"] == 2
    names = set(Upload.objects.values_list("original_filename", flat=True))
    assert names == {"red.png", "evil.png"}
    for upload in Upload.objects.all():
        assert ".." not in upload.original_key and upload.original_key.startswith("originals/")
        assert storage.read(upload.original_key) == image
    rejected = {r["name"]: r["detail"] for r in body["rejected"]}
    assert rejected["notes.txt"].startswith("File is not a valid image")
    assert rejected["inner.zip"].startswith("Nested archives are not accepted")


def test_not_a_zip_is_400(user, client_for):
    response = post_archive(client_for(user), make_image("JPEG", (60, 60)), "a.zip")
    assert response.status_code == 400
    assert response.json()["detail"] == "The archive is not a valid zip file"


def counts(body):
    return {k: v for k, v in body["counts"].items() if v}


def test_status_counts_progress_and_paginated_tasks(user, client_for):
    client = client_for(user)
    image = make_image("JPEG", (60, 60))
    body = post_files(client, [(image, f"{n}.jpg") for n in range(4)]).json()
    url = f"/api/v1/batches/{body['batch_id']}"
    first = client.get(url).json()
    assert (first["status"], first["progress"], counts(first)) == ("queued", 0, {"queued": 4})
    tasks = list(Task.objects.filter(batch_id=body["batch_id"]).order_by("created_at", "pk"))
    finish(tasks[0], result=make_image("PNG", (60, 60)))
    Task.objects.filter(pk=tasks[1].pk).update(status=Task.Status.PROCESSING, progress=50)
    running = client.get(url).json()
    assert running["status"] == "processing"
    assert running["progress"] == round((100 + 50) / 4)
    assert counts(running) == {"queued": 2, "processing": 1, "completed": 1}
    finish(tasks[1], result=make_image("PNG", (60, 60)))
    finish(tasks[2], status=Task.Status.FAILED, error="Processing failed: boom")
    finish(tasks[3], result=make_image("PNG", (60, 60)))
    done = client.get(url + "?page_size=3").json()
    assert (done["status"], done["progress"]) == ("partial", 100)
    assert done["tasks"]["count"] == 4 and len(done["tasks"]["results"]) == 3
    assert [t["task_id"] for t in done["tasks"]["results"]] == [str(t.id) for t in tasks[:3]]
    page2 = client.get(url + "?page_size=3&page=2").json()["tasks"]["results"]
    assert [t["task_id"] for t in page2] == [str(tasks[3].id)]
    listing = client.get("/api/v1/batches").json()
    assert [(b["batch_id"], b["status"]) for b in listing["results"]] == [
        (body["batch_id"], "partial")]


def test_all_failed_is_failed_and_all_done_is_completed(user, client_for):
    client = client_for(user)
    image = make_image("JPEG", (60, 60))
    failed = post_files(client, [(image, "a.jpg"), (image, "b.jpg")]).json()["batch_id"]
    for task in Task.objects.filter(batch_id=failed):
        finish(task, status=Task.Status.FAILED, error="x")
    done = post_files(client, [(image, "c.jpg")]).json()["batch_id"]
    for task in Task.objects.filter(batch_id=done):
        finish(task, result=make_image("PNG", (60, 60)))
    assert client.get(f"/api/v1/batches/{failed}").json()["status"] == "failed"
    assert client.get(f"/api/v1/batches/{done}").json()["status"] == "completed"


def test_other_users_batch_is_404(user, other_user, client_for):
    body = post_files(client_for(user), [(make_image("JPEG", (60, 60)), "a.jpg")]).json()
    other = client_for(other_user)
    for method, suffix in (("get", ""), ("get", "/download"), ("post", "/retry")):
        response = getattr(other, method)(f"/api/v1/batches/{body['batch_id']}{suffix}")
        assert response.status_code == 404, suffix
    assert other.get("/api/v1/batches").json()["results"] == []


def read_zip_response(response) -> zipfile.ZipFile:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response.streaming
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_download_streams_finished_results_with_a_manifest_while_running(user, client_for):
    client = client_for(user)
    image = make_image("JPEG", (60, 60))
    body = post_files(client, [(image, "shoe.jpg"), (image, "shoe.jpg"), (image, "bag.jpg"),
                               (image, "hat.jpg")]).json()
    tasks = list(Task.objects.filter(batch_id=body["batch_id"]).order_by("created_at", "pk"))
    results = [make_image("PNG", (60, 60), color=(n * 40, 0, 0)) for n in range(3)]
    finish(tasks[0], result=results[0])
    finish(tasks[1], result=results[1])
    finish(tasks[2], status=Task.Status.FAILED, error="Processing failed: boom")
    response = client.get(f"/api/v1/batches/{body['batch_id']}/download")
    assert f'filename="batch-{body["batch_id"]}.zip"' in response["Content-Disposition"]
    archive = read_zip_response(response)
    assert archive.namelist() == ["shoe.png", "shoe (2).png", "manifest.json"]
    assert archive.read("shoe.png") == results[0]
    assert archive.read("shoe (2).png") == results[1]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["complete"] is False and "still running" in manifest["note"]
    assert manifest["status"] == "processing"
    by_task = {m["task_id"]: m for m in manifest["members"]}
    assert by_task[str(tasks[2].id)] == {"name": "bag.jpg", "task_id": str(tasks[2].id),
                                         "status": "failed", "entry": None,
                                         "error": "Processing failed: boom"}
    assert by_task[str(tasks[3].id)]["status"] == "queued"
    assert by_task[str(tasks[0].id)]["entry"] == "shoe.png"


def test_retry_requeues_only_the_failed_members(user, client_for,
                                                django_capture_on_commit_callbacks):
    client = client_for(user)
    image = make_image("JPEG", (60, 60))
    body = post_files(client, [(image, "a.jpg"), (image, "b.jpg")]).json()
    tasks = list(Task.objects.filter(batch_id=body["batch_id"]).order_by("created_at", "pk"))
    url = f"/api/v1/batches/{body['batch_id']}/retry"
    assert client.post(url).status_code == 409  # nothing failed yet
    finish(tasks[0], result=make_image("PNG", (60, 60)))
    finish(tasks[1], status=Task.Status.FAILED, error="x")
    batch_queue().empty()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "processing"
    tasks[1].refresh_from_db()
    assert tasks[1].status == "queued" and tasks[1].error_message == ""
    assert batch_queue().job_ids == [tasks[1].rq_job_id]
    assert Task.objects.get(pk=tasks[0].pk).status == "completed"


def test_single_upload_cap_ignores_batch_members(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 1
    make_task(owner=user)  # one unfinished single task: the cap is reached
    image = make_image("JPEG", (60, 60))
    client = client_for(user)
    assert post_files(client, [(image, "a.jpg"), (image, "b.jpg")]).status_code == 202
    single = client.post("/api/v1/uploads", {"file": named(image, "x.jpg")}, format="multipart")
    assert single.status_code == 429


def test_download_of_a_finished_batch_says_complete(user, client_for):
    client = client_for(user)
    body = post_files(client, [(make_image("JPEG", (60, 60)), "C:\\photos\\cat.jpg")]).json()
    task = Task.objects.get(batch_id=body["batch_id"])
    png = make_image("PNG", (60, 60))
    finish(task, result=png)
    archive = read_zip_response(client.get(f"/api/v1/batches/{body['batch_id']}/download"))
    assert archive.namelist() == ["cat.png", "manifest.json"]
    manifest = json.loads(archive.read("manifest.json"))
    assert (manifest["complete"], manifest["note"], manifest["status"]) == (True, None,
                                                                            "completed")
    assert Image.open(io.BytesIO(archive.read("cat.png"))).size == (60, 60)


def test_zip_bomb_member_is_rejected_unread_and_too_many_members_is_400(user, client_for,
                                                                         settings):
    image = make_image("PNG", (80, 60))
    bomb = zip_of({"bomb.png": b"\0" * (5 * 1024 * 1024), "ok.png": image})
    response = post_archive(client_for(user), bomb)
    assert response.status_code == 202, response.content
    assert response.json()["rejected"] == [
        {"name": "bomb.png", "detail": "Compression ratio over 100:1; refused unread (zip bomb?)"}]
    assert response.json()["count"] == 1
    settings.QUICKBG_MAX_BATCH_FILES = 2
    crowded = post_archive(client_for(user), zip_of({f"{n}.png": image for n in range(3)}))
    assert crowded.status_code == 400
    assert crowded.json()["detail"] == "The archive holds 3 files (maximum 2 per batch)"
    assert Upload.objects.count() == 1


def test_monthly_credits_count_unfinished_tasks_and_hold_for_batches_and_retries(
        user, client_for, settings):
    settings.QUICKBG_MONTHLY_CREDITS = 2
    client = client_for(user)
    queued = make_task(owner=user)  # charged while it waits: 1 of 2 used
    files = [(make_image("JPEG", (120, 90)), f"photo-{n}.jpg") for n in range(2)]
    refused = post_files(client, files)
    assert refused.status_code == 402 and "monthly credits" in refused.json()["detail"]
    assert not Batch.objects.exists()
    assert post_files(client, files[:1]).status_code == 202  # 2 of 2

    Task.objects.filter(pk=queued.pk).update(status=Task.Status.FAILED)  # failed: free again
    assert client.post(f"/api/v1/tasks/{queued.pk}/retry").status_code == 202  # 2 of 2
    Task.objects.filter(pk=queued.pk).update(status=Task.Status.FAILED)
    make_task(owner=user, status=Task.Status.COMPLETED)  # 2 of 2 again
    retry = client.post(f"/api/v1/tasks/{queued.pk}/retry")
    assert retry.status_code == 402
    assert Task.objects.get(pk=queued.pk).status == Task.Status.FAILED
