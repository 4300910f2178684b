"""Data lifecycle through its public surfaces: ``DELETE uploads/{id}``, ``DELETE account``,
``manage.py purge`` and the expired task's API answers, on local storage and on S3 (moto).

"Nothing is left behind" is checked on every path: after it, each key the test stored exists
exactly when a row still points to it unmarked.
"""

from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from removal import jobs, runner, storage
from removal.models import DirectUpload, Task, Upload
from removal.services.tasks import task_claim, task_complete
from tests.factories import PASSWORD, make_task, make_upload
from tests.helpers import DiscModel

pytestmark = pytest.mark.django_db
Status = Task.Status


@pytest.fixture(params=["local", "s3"])
def backend(request):
    if request.param == "s3":
        request.getfixturevalue("s3")
    return request.param


def stored(key: str) -> bool:
    return bool(key) and default_storage.exists(key)


def bucket_keys() -> set[str]:
    """Every key in storage under the prefixes QuickBG writes (all of the bucket on S3)."""
    if storage.is_s3():
        return set(storage.keys_under(""))
    root = default_storage.location
    keys = set()
    for folder, _dirs, files in os.walk(root):
        keys |= {os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                 for f in files}
    return keys


def completed_task(upload, *, data=b"result") -> Task:
    """A task of ``upload`` completed through the services, its result really stored."""
    task = make_task(upload=upload)
    claim = task_claim(task_id=task.pk)
    key = storage.write(storage.result_key(task_id=task.pk), data)
    assert task_complete(claim=claim, result_key=key, processing_time=1.0, metrics={})
    return Task.objects.get(pk=task.pk)


def stored_upload(owner, **fields):
    upload = make_upload(owner=owner, **fields)
    storage.write(upload.original_key, b"original")
    return upload


def assert_nothing_left_behind(keys: set[str]) -> None:
    """Each of ``keys`` is stored iff an unmarked row points to it; on S3, no stray object."""
    referenced = set(Upload.objects.filter(expired_at=None).values_list("original_key", flat=True))
    referenced |= set(Task.objects.exclude(result_key="").values_list("result_key", flat=True))
    referenced |= set(Task.objects.exclude(background_key="")
                      .values_list("background_key", flat=True))
    for key in keys:
        assert stored(key) == (key in referenced), key
    for upload in Upload.objects.filter(expired_at=None):
        assert stored(upload.original_key), upload.original_key
    for task in Task.objects.exclude(result_key=""):
        assert stored(task.result_key), task.result_key
    if storage.is_s3():
        assert bucket_keys() <= referenced


# --- DELETE /api/v1/uploads/{id} ---------------------------------------------------------------


def test_delete_upload_removes_original_results_and_rows(backend, user, other_user, client_for):
    upload = stored_upload(user)
    first, second = completed_task(upload), completed_task(upload)
    queued = make_task(upload=upload)  # not started yet: its job will find nothing to claim
    keep = stored_upload(user)
    keep_task = completed_task(keep)
    theirs = stored_upload(other_user)
    their_task = completed_task(theirs)
    keys = {upload.original_key, first.result_key, second.result_key, keep.original_key,
            keep_task.result_key, theirs.original_key, their_task.result_key}
    assert all(stored(key) for key in keys)

    response = client_for(user).delete(f"/api/v1/uploads/{upload.pk}")

    assert response.status_code == 204 and response.content == b""
    assert not Upload.objects.filter(pk=upload.pk).exists()
    assert not Task.objects.filter(pk__in=[first.pk, second.pk, queued.pk]).exists()
    for key in (upload.original_key, first.result_key, second.result_key):
        assert not stored(key), key
    assert stored(keep.original_key) and stored(their_task.result_key)
    assert jobs.process_task(str(queued.pk)) == "skipped"
    assert_nothing_left_behind(keys)


def test_another_users_upload_is_404_and_kept(backend, user, other_user, client_for):
    theirs = stored_upload(other_user)
    task = completed_task(theirs)
    response = client_for(user).delete(f"/api/v1/uploads/{theirs.pk}")
    assert response.status_code == 404
    assert Upload.objects.filter(pk=theirs.pk).exists()
    assert stored(theirs.original_key) and stored(task.result_key)


class DeletingModel(DiscModel):
    """A stand-in model that deletes the task's upload through the API while it runs."""

    def __init__(self, delete):
        super().__init__()
        self.delete = delete

    def run(self, tensor, timeout=None):
        assert self.delete().status_code == 204
        return super().run(tensor, timeout)


def test_upload_deleted_while_processing_leaves_no_result(backend, user, client_for,
                                                          monkeypatch):
    from tests.images import make_image

    data = make_image("JPEG", (300, 200))
    upload = make_upload(owner=user, byte_size=len(data))
    storage.write(upload.original_key, data)
    task = make_task(upload=upload)
    client = client_for(user)
    model = DeletingModel(lambda: client.delete(f"/api/v1/uploads/{upload.pk}"))
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: model)
    written = []
    real_write = storage.write
    monkeypatch.setattr(storage, "write", lambda key, data, **kw: written.append(key)
                        or real_write(key, data, **kw))

    assert jobs.process_task(str(task.pk)) == "cancelled"

    assert written == [storage.result_key(task_id=task.pk)]  # the worker did write it ...
    assert not stored(written[0])  # ... and removed it when it saw the task was gone
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not stored(upload.original_key)
    assert_nothing_left_behind({upload.original_key, written[0]})


# --- DELETE /api/v1/account --------------------------------------------------------------------


def test_account_delete_needs_the_password_and_removes_everything(backend, user, other_user,
                                                                  client_for):
    uploads = [stored_upload(user) for _ in range(3)]
    results = [completed_task(upload) for upload in uploads[:2]]
    claim = task_claim(task_id=make_task(upload=uploads[2]).pk)  # processing
    incoming = f"{storage.incoming_prefix(user.pk)}abc/direct.jpg"
    storage.write(incoming, b"uploaded directly, never submitted")
    DirectUpload.objects.create(owner=user, key=incoming)
    theirs = stored_upload(other_user)
    keys = {u.original_key for u in uploads} | {t.result_key for t in results} | {
        incoming, theirs.original_key}
    client = client_for(user)

    wrong = client.delete("/api/v1/account", {"password": "not it"}, format="json")
    assert wrong.status_code == 400 and "password" in wrong.json()["detail"]
    assert Upload.objects.filter(owner=user).count() == 3 and all(stored(k) for k in keys)

    response = client.delete("/api/v1/account", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert not Upload.objects.filter(owner_id=user.pk).exists()
    assert not Task.objects.filter(upload__owner_id=user.pk).exists()
    assert not DirectUpload.objects.filter(owner_id=user.pk).exists()
    assert not any(stored(k) for k in keys - {theirs.original_key})
    assert stored(theirs.original_key)
    assert Task.objects.filter(pk=claim.task.pk).count() == 0
    assert client.get("/api/v1/tasks").status_code == 401  # the token's user is gone
    assert_nothing_left_behind(keys)


def test_account_delete_deactivates_first_so_nothing_sent_meanwhile_is_kept(backend, user,
                                                                            client_for,
                                                                            monkeypatch):
    """While the deletion runs, the user's JWT and API key are refused, and an upload that
    passed authentication just before is refused at its commit: none of its images stay."""
    from rest_framework.test import APIClient

    from accounts.services import api_key_create
    from removal.errors import Conflict
    from removal.services import retention, uploads
    from tests.images import make_image

    stored_upload(user)
    _, raw_key = api_key_create(user=user, name="script")
    client = client_for(user)
    with_key = APIClient()
    with_key.credentials(HTTP_X_API_KEY=raw_key)
    assert with_key.get("/api/v1/tasks").status_code == 200
    before = bucket_keys()
    during = {}
    real_delete = retention.uploads_delete

    def meanwhile(*, queryset):
        during["jwt"] = client.get("/api/v1/tasks").status_code
        during["api key"] = with_key.get("/api/v1/tasks").status_code
        try:
            uploads.upload_create_from_bytes(owner=user, data=make_image(), filename="late.png")
        except Conflict as exc:
            during["late upload"] = exc.detail
        return real_delete(queryset=queryset)

    monkeypatch.setattr(retention, "uploads_delete", meanwhile)
    response = client.delete("/api/v1/account", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert during == {"jwt": 401, "api key": 401, "late upload": (
        "This account is deactivated or being deleted; nothing was created")}
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert not Upload.objects.filter(owner_id=user.pk).exists()
    assert bucket_keys() - before == set()  # the late upload stored nothing that stayed
    assert not any(key.startswith(f"originals/{user.pk}/") for key in bucket_keys())


# --- Retention: manage.py purge ----------------------------------------------------------------


def run_purge(*args) -> str:
    out = io.StringIO()
    call_command("purge", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(upload, days: int) -> None:
    moment = timezone.now() - timedelta(days=days)
    Upload.objects.filter(pk=upload.pk).update(created_at=moment)
    Task.objects.filter(upload=upload).update(created_at=moment)


def test_purge_expires_old_uploads_and_keeps_marked_rows(backend, user, other_user, client_for):
    old = stored_upload(user, byte_size=2_000_000)
    old_tasks = [completed_task(old), make_task(upload=old, status=Status.FAILED)]
    busy = stored_upload(user)
    busy_task = make_task(upload=busy)  # queued: the upload waits for a later run
    recent = stored_upload(user)
    recent_task = completed_task(recent)
    theirs = stored_upload(other_user)
    their_task = completed_task(theirs)
    for upload in (old, busy, theirs):
        age(upload, 40)
    keys = {old.original_key, old_tasks[0].result_key, busy.original_key, recent.original_key,
            recent_task.result_key, theirs.original_key, their_task.result_key}

    dry = run_purge("--older-than", "30d", "--user", user.email, "--dry-run")
    assert "Dry run, nothing changed: would expire 1 upload(s)" in dry and "2 task(s)" in dry
    assert all(stored(key) for key in keys) and not Upload.objects.exclude(expired_at=None)

    done = run_purge("--older-than", "30d", "--user", user.email)

    assert "Done: expired 1 upload(s), 2 task(s); deleted 2 stored object(s)" in done
    old.refresh_from_db()
    assert old.expired_at is not None
    assert set(Task.objects.filter(upload=old).values_list("status", "result_key")) == {
        (Status.EXPIRED, "")}
    assert not stored(old.original_key) and not stored(old_tasks[0].result_key)
    assert stored(busy.original_key) and Task.objects.get(pk=busy_task.pk).status == Status.QUEUED
    assert stored(recent_task.result_key) and stored(their_task.result_key)  # --user, age
    assert_nothing_left_behind(keys)

    # The task still answers; its download link says why it is gone.
    client = client_for(user)
    body = client.get(f"/api/v1/tasks/{old_tasks[0].pk}").json()
    assert body["status"] == "expired" and body["result_url"] is None
    gone = client.get(f"/api/v1/tasks/{old_tasks[0].pk}/result")
    assert gone.status_code == 410 and "deleted on" in gone.json()["detail"]

    # Running it again finds nothing more (an interrupted run resumes the same way).
    assert "Done: expired 0 upload(s)" in run_purge("--older-than", "30d", "--user", user.email)
    Task.objects.filter(pk=busy_task.pk).update(status=Status.FAILED)
    assert "Done: expired 2 upload(s)" in run_purge("--older-than", "30d")  # busy + theirs
    assert not stored(busy.original_key) and not stored(their_task.result_key)
    assert_nothing_left_behind(keys)


def test_delete_and_purge_remove_the_uploaded_background_too(backend, user, client_for):
    """A task with ``bg_image_file`` keeps that image beside the original; it goes with them."""
    deleted, purged = stored_upload(user), stored_upload(user)
    keys = set()
    for upload in (deleted, purged):
        task = completed_task(upload)
        background = f"{upload.original_key.rsplit('/', 1)[0]}/background"
        storage.write(background, b"background")
        Task.objects.filter(pk=task.pk).update(background_key=background)
        keys |= {upload.original_key, task.result_key, background}
    age(purged, 40)
    assert all(stored(key) for key in keys)

    assert client_for(user).delete(f"/api/v1/uploads/{deleted.pk}").status_code == 204
    assert "deleted 3 stored object(s)" in run_purge("--older-than", "30d")

    assert not any(stored(key) for key in keys), [key for key in keys if stored(key)]
    assert set(Task.objects.filter(upload=purged).values_list("status", "background_key")) == {
        (Status.EXPIRED, "")}
    assert_nothing_left_behind(keys)


def test_purge_without_age_uses_the_retention_setting(user, settings):
    settings.QUICKBG_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="--older-than"):
        run_purge()
    upload = stored_upload(user)
    age(upload, 8)
    settings.QUICKBG_RETENTION_DAYS = 7
    assert "Done: expired 1 upload(s)" in run_purge()
    assert not stored(upload.original_key)


def test_old_local_download_link_answers_410(user, client_for):
    upload = stored_upload(user)
    task = completed_task(upload)
    link = client_for(user).get(f"/api/v1/tasks/{task.pk}").json()["presigned_url"]
    age(upload, 40)
    run_purge("--older-than", "30d")
    response = client_for(user).get(link)
    assert response.status_code == 410 and b"deleted" in response.content


def test_s3_deletes_in_batches_of_at_most_1000_keys(s3):
    keys = [f"results/batch-{i}.png" for i in range(1001)]
    for key in keys[:3] + keys[-2:]:
        storage.write(key, b"x")
    calls = []
    client = default_storage.connection.meta.client
    client.meta.events.register(
        "before-call.s3.DeleteObjects",
        lambda params, **kw: calls.append(params["body"].count(b"<Key>")))
    assert storage.delete_many(keys) == []
    assert calls == [1000, 1]
    assert not any(stored(key) for key in keys[:3] + keys[-2:])


@pytest.mark.django_db(transaction=True)
def test_workers_run_retention_once_a_day_when_it_is_set(settings, empty_queue):
    import threading
    import time

    from removal.queue import RETENTION_LOCK
    from removal.worker import QuickBGWorker
    from tests.factories import make_user

    settings.QUICKBG_RETENTION_DAYS = 30
    lock = f"{RETENTION_LOCK}:{settings.QUICKBG_QUEUE}"
    redis = empty_queue.connection
    redis.delete(lock)
    owner = make_user()
    first = stored_upload(owner)
    age(first, 31)

    def run_loop_once(worker) -> None:
        thread = threading.Thread(target=worker._retention_loop)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and redis.get(lock) is None:
            time.sleep(0.05)
        worker._stop_threads.set()
        thread.join(20)
        assert not thread.is_alive()

    try:
        run_loop_once(QuickBGWorker([empty_queue], connection=redis))
        first.refresh_from_db()
        assert first.expired_at is not None and not stored(first.original_key)
        assert redis.ttl(lock) > 23 * 3600  # taken for a day

        second = stored_upload(owner)
        age(second, 31)
        run_loop_once(QuickBGWorker([empty_queue], connection=redis))  # same day: lock held
        second.refresh_from_db()
        assert second.expired_at is None and stored(second.original_key)
    finally:
        redis.delete(lock)


def test_schema_documents_the_delete_endpoints(client):
    schema = client.get("/api/v1/schema?format=json").json()
    assert "204" in schema["paths"]["/api/v1/uploads/{id}"]["delete"]["responses"]
    account = schema["paths"]["/api/v1/account"]["delete"]
    assert "204" in account["responses"]
    assert '{"password":' in account["description"]
