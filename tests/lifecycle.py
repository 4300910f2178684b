"""Helpers of the data-lifecycle tests (deleting uploads and accounts, purge, retention):
store what a test needs, then check that nothing is left behind."""

from __future__ import annotations

import io
import os
from datetime import timedelta

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from removal import storage
from removal.models import Task, Upload
from removal.services.tasks import task_claim, task_complete
from tests.factories import make_task, make_upload


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


def run_purge(*args) -> str:
    out = io.StringIO()
    call_command("purge", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(upload, days: int) -> None:
    moment = timezone.now() - timedelta(days=days)
    Upload.objects.filter(pk=upload.pk).update(created_at=moment)
    Task.objects.filter(upload=upload).update(created_at=moment)
