"""Uploads: validate an original, store it, and create its Upload and first Task together;
delete an upload with everything stored for it."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from removal import fetch, modelstore, selectors, storage
from removal.errors import Conflict, InvalidInput, NotFound, TooManyTasks
from removal.models import DirectUpload, Task, Upload
from removal.pipeline.validate import ImageInfo, Limits, check_size, inspect
from removal.services.tasks import (
    check_monthly_credits,
    check_task_quota,
    lock_owner,
    task_enqueue,
    task_finished,
)
from removal.serving import model_require

logger = logging.getLogger(__name__)


def validation_limits() -> Limits:
    return Limits(
        max_bytes=int(settings.QUICKBG_MAX_UPLOAD_MB * 1024 * 1024),
        max_dimension=settings.QUICKBG_MAX_DIMENSION,
        min_dimension=settings.QUICKBG_MIN_DIMENSION,
    )


@dataclass(frozen=True)
class Original:
    """An original that passed validation and is in storage; its Upload row is not made yet."""

    upload_id: uuid.UUID
    key: str
    filename: str  # the client's name, kept only in the row
    info: ImageInfo
    sha256: str


def original_store(*, owner, data: bytes, filename: str) -> Original:
    """Validate image bytes (size, then a decodable image within the limits) and store them
    under a name of ours (the detected format): the one way an upload, a batch member or the
    remove.bg endpoint gets its original. Raises ``InvalidInput`` before anything is stored."""
    check_size(len(data), validation_limits())
    info = inspect(data, validation_limits())
    upload_id = uuid.uuid4()
    key = storage.original_key(owner_id=owner.pk, upload_id=upload_id, fmt=info.format)
    storage.write(key, data, content_type=storage.content_type_for(info.format))
    return Original(upload_id=upload_id, key=key, filename=filename[:255], info=info,
                    sha256=hashlib.sha256(data).hexdigest())


def upload_row_create(*, owner, original: Original) -> Upload:
    """The Upload row of a stored original (inside the caller's transaction)."""
    return Upload.objects.create(
        id=original.upload_id, owner=owner, original_key=original.key,
        original_filename=original.filename, format=original.info.format,
        byte_size=original.info.byte_size, width=original.info.width,
        height=original.info.height, sha256=original.sha256,
    )


def upload_create_from_file(*, owner, file, options: dict | None = None,
                            model: str | None = None, webhook_url: str = "") -> Task:
    """Validate an uploaded file, store it and queue a task for it.

    The declared size is checked before the body is read, so an oversized file is refused
    without loading it. ``options`` are already-parsed output options; ``model`` defaults to
    ``QUICKBG_MODEL``; ``webhook_url`` receives the task's event.
    """
    model = model_require(model)
    check_size(file.size, validation_limits())
    check_webhook_url(webhook_url)
    check_task_quota(owner=owner)
    return upload_create_from_bytes(owner=owner, data=file.read(), filename=file.name or "",
                                    options=options, model=model, webhook_url=webhook_url)


def upload_create_from_url(*, owner, url: str, options: dict | None = None,
                           model: str | None = None, webhook_url: str = "") -> Task:
    """Fetch an image URL now (in the caller's request), then as ``upload_create_from_file``.

    Fetched here rather than in the worker so that every refusal (SSRF rules, size, timeout,
    not an image) is the caller's 400 with its reason, and a task only exists for an image we
    hold. ``removal.fetch`` applies the rules; the body is cut off at the upload size limit.
    """
    model = model_require(model)
    check_webhook_url(webhook_url)
    check_task_quota(owner=owner)
    data = fetch.fetch_bytes(url, max_bytes=validation_limits().max_bytes)
    path = urlsplit(url).path.rstrip("/")
    filename = unquote(path.rsplit("/", 1)[-1]) or "image"
    return upload_create_from_bytes(owner=owner, data=data, filename=filename, options=options,
                                    model=model, webhook_url=webhook_url)


def check_webhook_url(url: str) -> None:
    if url:
        try:
            fetch.check_url(url)
        except fetch.FetchRefused as exc:
            raise fetch.FetchRefused(f"webhook_url: {exc.detail}") from None


def upload_create_from_bytes(*, owner, data: bytes, filename: str, options: dict | None = None,
                             model: str | None = None, background: bytes | None = None,
                             at_front: bool = False, webhook_url: str = "") -> Task:
    """Validate image bytes, store them and queue a task for them.

    ``background``: image bytes to composite the cut-out over (validated like an upload,
    stored next to the original). ``at_front``: queue ahead of everything waiting (the
    synchronous remove.bg endpoint). ``webhook_url`` receives the task's event.
    """
    model = model_require(model)
    check_size(len(data), validation_limits())
    check_task_quota(owner=owner)
    if background is not None:
        check_size(len(background), validation_limits())
        background_info = inspect(background, validation_limits())
    original = original_store(owner=owner, data=data, filename=filename)
    key = original.key
    background_key = (storage.background_key(owner_id=owner.pk, upload_id=original.upload_id)
                      if background is not None else "")
    if background_key:
        storage.write(background_key, background,
                      content_type=storage.content_type_for(background_info.format))
    try:
        return _create_upload_and_task(
            owner=owner, original=original, options=options, model=model,
            background_key=background_key, at_front=at_front, webhook_url=webhook_url,
        )
    except Exception:
        # Remove the stored original only if its rows were not committed: a failure after the
        # commit (an on-commit hook) leaves a real task that still needs its original.
        if not Upload.objects.filter(pk=original.upload_id).exists():
            storage.delete_quietly(key)
            if background_key:
                storage.delete_quietly(background_key)
        raise


def upload_create_from_key(*, owner, key: str, options: dict | None = None,
                           model: str | None = None, webhook_url: str = "") -> Task:
    """Queue a task for an object the caller uploaded directly to a key we issued them.

    Only a key issued to this caller by ``direct_upload_issue`` is accepted, compared exactly
    (never a prefix test: storage backends normalise ``..``), and each key is used once. Another
    user's key is indistinguishable from an unknown one: both are ``NotFound``.
    """
    model = model_require(model)
    _check_key_syntax(key)
    check_webhook_url(webhook_url)
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
        original = Original(upload_id=uuid.uuid4(), key=key, filename=issued.filename,
                            info=info, sha256=hashlib.sha256(data).hexdigest())
        return _create_upload_and_task(owner=owner, original=original, options=options,
                                       model=model, webhook_url=webhook_url)


def _check_key_syntax(key: str) -> None:
    if not storage.is_well_formed_key(key):
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
    # A server-chosen name: the client's file name never decides how the object is served.
    key = f"{storage.incoming_prefix(owner.pk)}{uuid.uuid4()}/original"
    post = storage.presigned_post(key, max_bytes=validation_limits().max_bytes)
    DirectUpload.objects.create(owner=owner, key=key, filename=filename[:255])
    return {"s3_key": key, "url": post["url"], "fields": post["fields"],
            "expires_in": settings.QUICKBG_URL_EXPIRY,
            "max_bytes": validation_limits().max_bytes}


def _create_upload_and_task(*, owner, original: Original, options, model,
                            background_key: str = "", at_front: bool = False,
                            webhook_url: str = "") -> Task:
    model = model or settings.QUICKBG_MODEL
    with transaction.atomic():
        # Re-check the cap under a lock on the user's row, so concurrent uploads cannot
        # overshoot it (the early check only spares storing a file that would be refused).
        lock_owner(owner_id=owner.pk)
        check_task_quota(owner=owner)
        check_monthly_credits(owner=owner, charge=selectors.credit_cost(options))
        upload = upload_row_create(owner=owner, original=original)
        task = None
        if not background_key:  # a composite over the caller's own background is never reused
            task = _reuse_result(upload=upload, model=model, options=options or {},
                                 webhook_url=webhook_url)
        if task is None:
            task = Task.objects.create(
                upload=upload, model=model, options=options or {}, webhook_url=webhook_url,
                background_key=background_key,
            )
            task_enqueue(task=task, at_front=at_front)
    return task


def _reuse_result(*, upload: Upload, model: str, options: dict, webhook_url: str) -> Task | None:
    """A task completed at once with a copy of an identical earlier result, or None.

    Identical: the same owner, image bytes (sha256), effective options, model and weights
    (``QUICKBG_REUSE_RESULTS`` off: never). The stored object is copied to the new task's own
    key, so deleting either task's result never breaks the other. Its event is emitted after
    commit, like a task a worker completed.
    """
    spec = modelstore.MODELS.get(model)
    if not settings.QUICKBG_REUSE_RESULTS or spec is None:
        return None
    source = selectors.reusable_result(owner=upload.owner, sha256=upload.sha256, model=model,
                                       options=options, model_sha256=spec.sha256)
    if source is None:
        return None
    try:
        data = storage.read(source.result_key)
    except Exception:  # noqa: BLE001 - gone or unreadable: reuse is only a shortcut, compute
        logger.warning("task %s: result %s not reusable, computing again", source.pk,
                       source.result_key, exc_info=True)
        return None
    task_id = uuid.uuid4()
    key = storage.write(
        storage.result_key(task_id=task_id, extension=storage.extension_of(source.result_key)),
        data, content_type=storage.content_type_of(source.result_key))
    now = timezone.now()
    try:
        task = Task.objects.create(
            id=task_id, upload=upload, model=model, options=options, webhook_url=webhook_url,
            status=Task.Status.COMPLETED, progress=100, cached=True, result_key=key,
            processing_time=0.0, metrics={**source.metrics, "cached_from": str(source.pk)},
            started_at=now, finished_at=now,
        )
    except Exception:
        storage.delete_quietly(key)
        raise
    task_finished(tasks=[task])  # its waiters and its event, after commit
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
    """``upload_delete`` for many uploads, ``DELETE_CHUNK`` at a time (rows, then objects).

    The deleted tasks end through ``task_finished``: a batch that loses its last unfinished
    member this way is finished and announced (``batch.completed``) like one whose last member
    a worker finished."""
    failed: list[str] = []
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            return failed
        with transaction.atomic():
            list(Upload.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
            keys = stored_keys(upload_ids=ids)
            task_finished(tasks=Task.objects.filter(upload_id__in=ids).only("id", "batch_id"))
            Task.objects.filter(upload_id__in=ids).delete()
            Upload.objects.filter(pk__in=ids).delete()
        # After the commit: a failure here leaves objects without rows, never the reverse.
        failed += storage.delete_many(keys)


def stored_keys(*, upload_ids: list) -> list[str]:
    """Every object key of these uploads and their tasks (originals, backgrounds, results, and
    what a task in flight may be writing now). Call it with the uploads locked."""
    keys = list(Upload.objects.filter(pk__in=upload_ids).values_list("original_key", flat=True))
    for task_id, status, result, background in Task.objects.filter(
            upload_id__in=upload_ids).values_list("pk", "status", "result_key", "background_key"):
        keys += [result, background]
        if status in selectors.IN_FLIGHT:  # its worker may be writing a result now
            keys += storage.result_keys_of(task_id)
    return [key for key in keys if key]
