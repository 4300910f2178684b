from __future__ import annotations

import hashlib
import itertools
import uuid

from django.utils import timezone

from accounts.models import User
from removal import storage
from removal.models import Task, Upload
from removal.modelstore import DEFAULT_MODEL

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_user(**fields) -> User:
    n = next(_seq)
    fields.setdefault("username", f"user{n}")
    fields.setdefault("email", f"user{n}@example.com")
    return User.objects.create_user(password=PASSWORD, **fields)


def make_upload(*, owner, **fields) -> Upload:
    upload_id = fields.pop("id", uuid.uuid4())
    defaults = dict(
        original_key=f"originals/{owner.pk}/{upload_id}/image.jpg", original_filename="image.jpg",
        format="JPEG", byte_size=1234, width=100, height=100,
        sha256=hashlib.sha256(str(upload_id).encode()).hexdigest(),
    )
    defaults.update(fields)
    return Upload.objects.create(id=upload_id, owner=owner, **defaults)


def make_task(*, owner=None, upload=None, **fields) -> Task:
    upload = upload or make_upload(owner=owner or make_user())
    fields.setdefault("model", DEFAULT_MODEL)
    return Task.objects.create(upload=upload, **fields)


def stored_task(owner, data: bytes, **task_fields) -> Task:
    """A task whose upload's original (``data``) is in storage, ready for a worker."""
    upload = make_upload(owner=owner)
    storage.write(upload.original_key, data)
    return make_task(upload=upload, **task_fields)


def completed_task(owner, **fields) -> Task:
    """A completed task whose result is in storage (its upload's original is not)."""
    upload = make_upload(owner=owner)
    task = make_task(upload=upload, status=Task.Status.COMPLETED, progress=100,
                     finished_at=timezone.now(), **fields)
    key = storage.write(storage.result_key(task_id=task.pk), b"\x89PNG result bytes")
    Task.objects.filter(pk=task.pk).update(result_key=key)
    task.refresh_from_db()
    return task
