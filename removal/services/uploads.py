"""Uploads: validate an original, store it, and create its Upload and first Task together;
delete an upload with everything stored for it."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from removal import selectors, storage
from removal.errors import Conflict, InvalidInput, NotFound, TooManyTasks
from removal.models import DirectUpload, Task, Upload
from removal.pipeline.validate import Limits, check_size, inspect
from removal.services.tasks import check_task_quota, task_enqueue


def validation_limits() -> Limits:
    return Limits(
        max_bytes=int(settings.QUICKBG_MAX_UPLOAD_MB * 1024 * 1024),
        max_dimension=settings.QUICKBG_MAX_DIMENSION,
        min_dimension=settings.QUICKBG_MIN_DIMENSION,
    )


def upload_create_from_file(*, owner, file, options: dict | None = None,
                            model: str | None = None) -> Task:
    """Validate an uploaded file, store it and queue a task for it.

    The declared size is checked before the body is read, so an oversized file is refused
    without loading it. ``options`` are already-parsed output options; ``model`` defaults to
    ``QUICKBG_MODEL``.
    """
    check_size(file.size, validation_limits())
    check_task_quota(owner=owner)
    data = file.read()
    filename = file.name or ""
    info = inspect(data, validation_limits())
    upload_id = uuid.uuid4()
    key = storage.original_key(owner_id=owner.pk, upload_id=upload_id, filename=filename)
    storage.write(key, data)
    try:
        return _create_upload_and_task(
            upload_id=upload_id, owner=owner, key=key, filename=filename, info=info,
            sha256=hashlib.sha256(data).hexdigest(), options=options, model=model,
        )
    except Exception:
        # Remove the stored original only if its rows were not committed: a failure after the
        # commit (an on-commit hook) leaves a real task that still needs its original.
        if not Upload.objects.filter(pk=upload_id).exists():
            storage.delete_quietly(key)
        raise


def upload_create_from_key(*, owner, key: str, options: dict | None = None,
                           model: str | None = None) -> Task:
    """Queue a task for an object the caller uploaded directly to a key we issued them.

    Only a key issued to this caller by ``direct_upload_issue`` is accepted, compared exactly
    (never a prefix test: storage backends normalise ``..``), and each key is used once. Another
    user's key is indistinguishable from an unknown one: both are ``NotFound``.
    """
    _check_key_syntax(key)
    check_task_quota(owner=owner)
    issued = DirectUpload.objects.filter(owner=owner, key=key).first()
    if issued is None:
        raise NotFound(
            "Unknown s3_key: request an upload URL from POST /api/v1/uploads/presign first"
        )
    if issued.used_at is not None:
        raise Conflict("This s3_key was already submitted; request a new upload URL")
    if not storage.exists(key):
        raise NotFound("Nothing has been uploaded to this s3_key yet")
    check_size(storage.size(key), validation_limits())
    data = storage.read(key)
    info = inspect(data, validation_limits())
    with transaction.atomic():
        if DirectUpload.objects.filter(pk=issued.pk, used_at=None).update(
                used_at=timezone.now()) != 1:
            raise Conflict("This s3_key was already submitted; request a new upload URL")
        return _create_upload_and_task(
            upload_id=uuid.uuid4(), owner=owner, key=key, filename=key.rsplit("/", 1)[-1],
            info=info, sha256=hashlib.sha256(data).hexdigest(), options=options, model=model,
        )


def _check_key_syntax(key: str) -> None:
    bad = (
        not key
        or len(key) > 512
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or "%" in key
        or any(ord(ch) < 32 for ch in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    )
    if bad:
        raise InvalidInput(
            "Invalid s3_key: use the key returned by POST /api/v1/uploads/presign, unchanged"
        )


def direct_upload_issue(*, owner, filename: str) -> dict:
    """Issue a key in the caller's own prefix and a presigned S3 POST (size-limited) for it."""
    if not storage.is_s3():
        raise InvalidInput(
            "Direct uploads need S3 storage (AWS_STORAGE_BUCKET_NAME); upload the file instead"
        )
    check_task_quota(owner=owner)
    recent = timezone.now() - timedelta(seconds=settings.QUICKBG_URL_EXPIRY)
    unused = DirectUpload.objects.filter(owner=owner, used_at=None, created_at__gt=recent).count()
    if unused >= settings.QUICKBG_MAX_QUEUED_TASKS:
        raise TooManyTasks(
            f"You have {unused} upload URLs not yet submitted (limit "
            f"{settings.QUICKBG_MAX_QUEUED_TASKS}); submit or let them expire",
            retry_after=60,
        )
    key = (f"{storage.incoming_prefix(owner.pk)}{uuid.uuid4()}/"
           f"{storage.safe_filename(filename)}")
    post = storage.presigned_post(key, max_bytes=validation_limits().max_bytes)
    DirectUpload.objects.create(owner=owner, key=key)
    return {"s3_key": key, "url": post["url"], "fields": post["fields"],
            "expires_in": settings.QUICKBG_URL_EXPIRY,
            "max_bytes": validation_limits().max_bytes}


def _create_upload_and_task(*, upload_id, owner, key, filename, info, sha256, options,
                            model) -> Task:
    with transaction.atomic():
        # Re-check the cap under a lock on the user's row, so concurrent uploads cannot
        # overshoot it (the early check only spares storing a file that would be refused).
        list(type(owner).objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
        check_task_quota(owner=owner)
        upload = Upload.objects.create(
            id=upload_id, owner=owner, original_key=key, original_filename=filename[:255],
            format=info.format, byte_size=info.byte_size, width=info.width, height=info.height,
            sha256=sha256,
        )
        task = Task.objects.create(
            upload=upload, model=model or settings.QUICKBG_MODEL, options=options or {}
        )
        task_enqueue(task=task)
    return task


# --- Deleting ----------------------------------------------------------------------------------

DELETE_CHUNK = 500


def upload_delete(*, upload: Upload) -> list[str]:
    """Delete an upload, its tasks and every stored object of them (original and results).

    Rows are deleted, not anonymised: a user who deletes an image expects it gone, and nothing
    else (billing, statistics) needs the row. A task still queued or processing is cancelled by
    the same delete: its job finds no task to claim, and a worker already running it checks that
    its claim still holds after writing the result and removes what it wrote
    (``runner.run_task``), so no result outlives the delete. Returns the keys storage refused to
    delete (logged by the caller).
    """
    return uploads_delete(queryset=Upload.objects.filter(pk=upload.pk))


def uploads_delete(*, queryset: QuerySet[Upload]) -> list[str]:
    """``upload_delete`` for many uploads, ``DELETE_CHUNK`` at a time (rows, then objects)."""
    failed: list[str] = []
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            return failed
        keys: list[str] = []
        with transaction.atomic():
            rows = Upload.objects.select_for_update().filter(pk__in=ids)
            keys += list(rows.values_list("original_key", flat=True))
            for task_id, status, result in Task.objects.filter(upload_id__in=ids).values_list(
                    "pk", "status", "result_key"):
                keys.append(result)
                if status in selectors.IN_FLIGHT:  # its worker may be writing a result now
                    keys += storage.result_keys_of(task_id)
            Task.objects.filter(upload_id__in=ids).delete()
            Upload.objects.filter(pk__in=ids).delete()
        # After the commit: a failure here leaves objects without rows, never the reverse.
        failed += storage.delete_many(keys)
