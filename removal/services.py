"""The only place that creates or changes Uploads and Tasks.

The API, the admin, the management commands and the jobs all call these functions. Status moves
only by guarded updates (``filter(pk=..., status=expected).update(...)``) whose row count says
whether the move happened; no row lock is ever held across model inference.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rq import Retry

from removal import storage
from removal.errors import Conflict, NotFound, QuickBGError, TooManyTasks
from removal.models import DirectUpload, IdempotencyKey, Task, Upload
from removal.pipeline.validate import Limits, check_size, inspect

logger = logging.getLogger(__name__)

Status = Task.Status
JOB_FUNC = "removal.jobs.process_task"


def validation_limits() -> Limits:
    return Limits(
        max_bytes=int(settings.QUICKBG_MAX_UPLOAD_MB * 1024 * 1024),
        max_dimension=settings.QUICKBG_MAX_DIMENSION,
        min_dimension=settings.QUICKBG_MIN_DIMENSION,
    )


def default_task_options() -> dict:
    return {"model": settings.QUICKBG_MODEL}


# --- Uploads -----------------------------------------------------------------------------------


def upload_create_from_file(*, owner, file, options: dict | None = None) -> Task:
    """Validate an uploaded file, store it and queue a task for it.

    The declared size is checked before the body is read, so an oversized file is refused
    without loading it.
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
            sha256=hashlib.sha256(data).hexdigest(), options=options,
        )
    except Exception:
        # Remove the stored original only if its rows were not committed: a failure after the
        # commit (an on-commit hook) leaves a real task that still needs its original.
        if not Upload.objects.filter(pk=upload_id).exists():
            storage.delete_quietly(key)
        raise


def upload_create_from_key(*, owner, key: str, options: dict | None = None) -> Task:
    """Queue a task for an object the caller uploaded directly to a key we issued them.

    Only a key issued to this caller by ``direct_upload_issue`` is accepted, compared exactly
    (never a prefix test: storage backends normalise ``..``), and each key is used once. Another
    user's key is indistinguishable from an unknown one: both are 404.
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
            info=info, sha256=hashlib.sha256(data).hexdigest(), options=options,
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
        raise QuickBGError(
            "Invalid s3_key: use the key returned by POST /api/v1/uploads/presign, unchanged"
        )


def direct_upload_issue(*, owner, filename: str) -> dict:
    """Issue a key in the caller's own prefix and a presigned S3 POST (size-limited) for it."""
    if not storage.is_s3():
        raise QuickBGError(
            "Direct uploads need S3 storage (AWS_STORAGE_BUCKET_NAME); upload the file instead",
            status_code=400,
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


def check_task_quota(*, owner) -> None:
    """Refuse a new upload while the caller already has too many unfinished tasks."""
    unfinished = Task.objects.filter(
        upload__owner=owner, status__in=[Status.QUEUED, Status.PROCESSING]
    ).count()
    limit = settings.QUICKBG_MAX_QUEUED_TASKS
    if unfinished >= limit:
        raise TooManyTasks(
            f"You have {unfinished} unfinished tasks (limit {limit}); wait for some to finish",
            retry_after=30,
        )


def _create_upload_and_task(*, upload_id, owner, key, filename, info, sha256, options) -> Task:
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
        options = {**default_task_options(), **(options or {})}
        task = Task.objects.create(upload=upload, options=options)
        task_enqueue(task=task)
    return task


# --- Idempotency ------------------------------------------------------------------------------

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def upload_idempotent(*, owner, key: str, request_hash: str,
                      perform: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
    """Run ``perform`` once per (owner, Idempotency-Key) within 24 h and replay its response.

    The same key with a different request body is a 422; a key whose first request is still
    running is a 409. A failed first attempt frees the key so the client can try again.
    """
    if len(key) > 255:
        raise QuickBGError("Idempotency-Key must be at most 255 characters")
    IdempotencyKey.objects.filter(
        owner=owner, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW
    ).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(owner=owner, key=key, request_hash=request_hash)
    except IntegrityError:
        record = IdempotencyKey.objects.get(owner=owner, key=key)
        if record.request_hash != request_hash:
            raise QuickBGError(
                "This Idempotency-Key was already used with a different request body",
                status_code=422,
            ) from None
        if record.response_status is None:
            raise Conflict("A request with this Idempotency-Key is still in progress") from None
        return record.response_status, record.response_body
    try:
        status, body = perform()
    except BaseException:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        raise
    IdempotencyKey.objects.filter(pk=record.pk).update(response_status=status, response_body=body)
    return status, body


# --- Tasks: queueing ----------------------------------------------------------------------------


def get_queue():
    return django_rq.get_queue(settings.QUICKBG_QUEUE)


def task_enqueue(*, task: Task, at_front: bool = False) -> str:
    """Put a queued task on the RQ queue once the current transaction commits.

    The job id is generated here (inside a transaction django-rq's ``enqueue`` returns ``None``)
    and stored on the task; the job's only argument is the task id.
    """
    job_id = f"task-{task.id}-{uuid.uuid4().hex[:8]}"
    Task.objects.filter(pk=task.pk).update(rq_job_id=job_id, updated_at=timezone.now())
    task.rq_job_id = job_id
    get_queue().enqueue_call(
        func=JOB_FUNC,
        args=(str(task.id),),
        job_id=job_id,
        timeout=settings.QUICKBG_JOB_TIMEOUT,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        retry=retry_policy(),
        at_front=at_front,
    )
    return job_id


def retry_intervals() -> list[int]:
    """Exponential backoff: QUICKBG_RETRY_DELAY, then doubled, once per allowed retry."""
    delay = settings.QUICKBG_RETRY_DELAY
    return [delay * 2**n for n in range(settings.QUICKBG_MAX_RETRIES)]


def retry_policy() -> Retry | None:
    """RQ's ``Retry`` for transient failures. Interval retries fire from the worker's scheduler,
    which ``run_worker`` always starts."""
    if settings.QUICKBG_MAX_RETRIES == 0:
        return None
    return Retry(max=settings.QUICKBG_MAX_RETRIES, interval=retry_intervals())


def max_attempts() -> int:
    return settings.QUICKBG_MAX_RETRIES + 1


def task_retry(*, task: Task) -> Task:
    """Put a failed task back on the queue (owner via the API, staff via the admin)."""
    with transaction.atomic():
        # A retry gets the full retry budget again: attempts count from zero.
        moved = Task.objects.filter(pk=task.pk, status=Status.FAILED).update(
            status=Status.QUEUED, progress=0, attempts=0, error_message="", started_at=None,
            finished_at=None, updated_at=timezone.now(),
        )
        if moved != 1:
            raise QuickBGError(f"Only failed tasks can be retried; this one is {task.status}",
                               status_code=409)
        task.refresh_from_db()
        task_enqueue(task=task)
    return task


# --- Tasks: the worker's side ----------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a worker holds after claiming a task: only this attempt may finish it."""

    task: Task
    attempt: int


def task_claim(*, task_id, job_id: str | None = None) -> Claim | None:
    """Move a queued task to processing. ``None`` when it is not queued (done, or taken).

    ``job_id`` is the RQ job doing the work: recorded in the same update, so the reconciler
    checks the job that really holds the task (not a newer one that found it taken).
    """
    now = timezone.now()
    changes = dict(status=Status.PROCESSING, attempts=F("attempts") + 1, progress=5,
                   started_at=now, updated_at=now, error_message="")
    if job_id:
        changes["rq_job_id"] = job_id
    claimed = Task.objects.filter(pk=task_id, status=Status.QUEUED).update(**changes)
    if claimed != 1:
        return None
    task = Task.objects.select_related("upload").get(pk=task_id)
    return Claim(task=task, attempt=task.attempts)


def _held(claim: Claim):
    return Task.objects.filter(pk=claim.task.pk, status=Status.PROCESSING, attempts=claim.attempt)


def task_set_progress(*, claim: Claim, progress: int) -> None:
    _held(claim).update(progress=progress, updated_at=timezone.now())


def task_complete(*, claim: Claim, result_key: str, processing_time: float, metrics: dict) -> bool:
    now = timezone.now()
    done = _held(claim).update(
        status=Status.COMPLETED, progress=100, result_key=result_key,
        processing_time=processing_time, metrics=metrics, finished_at=now, updated_at=now,
    )
    if done != 1:
        logger.warning("task %s attempt %s lost its claim; result not recorded",
                       claim.task.pk, claim.attempt)
    return done == 1


def task_fail(*, claim: Claim, message: str, processing_time: float | None = None,
              metrics: dict | None = None) -> bool:
    now = timezone.now()
    done = _held(claim).update(
        status=Status.FAILED, error_message=message[:2000], processing_time=processing_time,
        metrics=metrics or {}, finished_at=now, updated_at=now,
    )
    return done == 1


def task_release_for_retry(*, claim: Claim, message: str) -> bool:
    """After a transient failure: hand the task back to the queue for RQ's scheduled retry."""
    return _held(claim).update(
        status=Status.QUEUED, progress=0, error_message=message[:2000],
        updated_at=timezone.now(),
    ) == 1


def task_recover(*, task_id, status: str, attempts: int) -> str:
    """Recover a task that no live job holds (the reconciler calls this).

    A ``processing`` task whose worker died goes back to ``queued`` - or to ``failed`` once it
    has used every attempt, so a poison image cannot kill workers forever. Guarded on the
    status and attempt count the caller saw, so a worker that is in fact alive keeps its claim.
    Returns ``"requeued"``, ``"failed"`` or ``"skipped"``.
    """
    now = timezone.now()
    rows = Task.objects.filter(pk=task_id, status=status, attempts=attempts)
    if status == Status.PROCESSING and attempts >= max_attempts():
        moved = rows.update(
            status=Status.FAILED, finished_at=now, updated_at=now,
            error_message=f"Processing stopped unexpectedly {attempts} times (worker crashed "
            "or was killed); giving up",
        )
        return "failed" if moved else "skipped"
    with transaction.atomic():
        moved = rows.update(status=Status.QUEUED, progress=0, updated_at=now)
        if not moved:
            return "skipped"
        # At the front: the task already waited its turn once, and the recovery bound should not
        # grow with the queue's depth.
        task_enqueue(task=Task.objects.get(pk=task_id), at_front=True)
    return "requeued"


# --- Tasks: reprocessing (admin action, `reprocess` command) -----------------------------------


def task_reprocess(*, task: Task) -> Task:
    """Queue a NEW task on the task's upload with the current default model.

    The old task is left as it was (its result stays downloadable); the new task keeps the old
    one's other options. A task that is still queued or processing is refused (409).
    """
    if task.status in (Status.QUEUED, Status.PROCESSING):
        raise QuickBGError(f"Task {task.pk} is still {task.status}; not reprocessed",
                           status_code=409)
    if upload_has_task_in_flight(upload_id=task.upload_id):
        raise QuickBGError(f"Upload {task.upload_id} already has a task queued or processing",
                           status_code=409)
    with transaction.atomic():
        new_task = Task.objects.create(
            upload_id=task.upload_id, options={**task.options, **default_task_options()}
        )
        task_enqueue(task=new_task)
    return new_task


def upload_has_task_in_flight(*, upload_id) -> bool:
    return Task.objects.filter(
        upload_id=upload_id, status__in=(Status.QUEUED, Status.PROCESSING)
    ).exists()
