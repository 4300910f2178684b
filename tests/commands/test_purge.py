"""manage.py purge: expires old uploads (originals, results and backgrounds deleted, rows kept and
marked; an old download link answers 410), by age or by the retention setting."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from removal import storage
from removal.models import Task, Upload
from tests.factories import make_task
from tests.lifecycle import (
    age,
    assert_nothing_left_behind,
    completed_task,
    run_purge,
    stored,
    stored_upload,
)

pytestmark = pytest.mark.django_db


Status = Task.Status


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
