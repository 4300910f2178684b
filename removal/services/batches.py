"""Batches: many images in one request, created all at once, retried, reprocessed, finished.

**Quotas.** A batch is one request for the upload throttle (``QUICKBG_UPLOAD_RATE``: the API
throttles ``POST /batches`` like ``POST /uploads``). Its members never count against the
single-upload cap (``QUICKBG_MAX_QUEUED_TASKS``, 20 by default), so a 100-image batch is not
refused by it; instead every user has a cap on unfinished batch members across all their batches
(``QUICKBG_MAX_QUEUED_BATCH_TASKS``, 500 by default). A batch that would take the user past it
is refused whole (429), so sending many batches does not dodge it. Batch members run on the batch
queue, below single uploads, so they cannot crowd them out either.

**All or nothing.** Each acceptable member is validated with the single-upload checks and its
original stored; then one transaction creates the Batch, every Upload and Task, and queues the
jobs (after commit). If anything fails before the commit, the stored originals are removed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from removal import selectors, storage
from removal.errors import Conflict, InvalidInput, TooManyTasks
from removal.models import Batch, Task, Upload
from removal.pipeline.archive import Member, ZipLimits, read_zip, safe_member_name
from removal.pipeline.validate import check_size
from removal.services import webhooks
from removal.services.tasks import (
    check_monthly_credits,
    lock_owner,
    task_enqueue,
    task_retry,
)
from removal.services.uploads import (
    Original,
    check_webhook_url,
    original_store,
    upload_row_create,
    validation_limits,
)
from removal.serving import model_require

logger = logging.getLogger(__name__)

Status = Task.Status


@dataclass
class BatchCreated:
    batch: Batch
    tasks: list[Task]
    rejected: list[dict] = field(default_factory=list)


def max_batch_bytes() -> int:
    return int(settings.QUICKBG_MAX_BATCH_MB * 1024 * 1024)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.2f}".rstrip("0").rstrip(".")


def check_batch_quota(*, owner, adding: int) -> None:
    """Refuse ``adding`` new batch members if the user's unfinished ones would pass the cap."""
    unfinished = selectors.unfinished_batch_task_count(owner=owner)
    limit = settings.QUICKBG_MAX_QUEUED_BATCH_TASKS
    if unfinished + adding > limit:
        raise TooManyTasks(
            f"You have {unfinished} unfinished batch images and this adds {adding} (limit "
            f"{limit}); wait for some to finish",
            retry_after=60,
        )


def _check_count(count: int) -> None:
    if count > settings.QUICKBG_MAX_BATCH_FILES:
        raise InvalidInput(
            f"Too many files in one batch: {count} (maximum {settings.QUICKBG_MAX_BATCH_FILES})"
        )


def batch_create_from_files(*, owner, files: list, options: dict | None = None,
                            model: str | None = None, webhook_url: str = "") -> BatchCreated:
    """A batch of uploaded files (repeated ``files`` parts). Declared sizes are checked first,
    so nothing is read when the request is over its limits."""
    model = model_require(model)
    if not files:
        raise InvalidInput("Send at least one image (repeated 'files' parts) or one 'archive'")
    _check_count(len(files))
    total = sum(f.size or 0 for f in files)
    if total > max_batch_bytes():
        raise InvalidInput(f"The batch ({_mb(total)}MB) exceeds the maximum total size "
                           f"({_mb(max_batch_bytes())}MB)")
    check_batch_quota(owner=owner, adding=len(files))

    def members() -> Iterator[Member]:
        for index, file in enumerate(files, start=1):
            name = safe_member_name(file.name or "", index)
            try:
                check_size(file.size or 0, validation_limits())
            except InvalidInput as exc:
                yield Member(name, error=exc.detail)
                continue
            yield Member(name, data=file.read())

    return _create(owner=owner, members=members(), options=options, model=model,
                   webhook_url=webhook_url)


def batch_create_from_archive(*, owner, archive, options: dict | None = None,
                              model: str | None = None, webhook_url: str = "") -> BatchCreated:
    """A batch from one zip: see ``removal.pipeline.archive`` for what a hostile zip meets."""
    model = model_require(model)
    if archive.size is not None and archive.size > max_batch_bytes():
        raise InvalidInput(f"The archive ({_mb(archive.size)}MB) exceeds the maximum total size "
                           f"({_mb(max_batch_bytes())}MB)")
    limits = ZipLimits(
        max_members=settings.QUICKBG_MAX_BATCH_FILES, max_total_bytes=max_batch_bytes(),
        max_member_bytes=validation_limits().max_bytes, max_ratio=settings.QUICKBG_ZIP_MAX_RATIO,
    )
    check_batch_quota(owner=owner, adding=1)
    return _create(owner=owner, members=read_zip(archive, limits), options=options, model=model,
                   webhook_url=webhook_url)


def _create(*, owner, members: Iterable[Member], options, model, webhook_url) -> BatchCreated:
    check_webhook_url(webhook_url)  # the same SSRF rules as every webhook target
    stored: list[Original] = []
    rejected: list[dict] = []
    batch_id = uuid.uuid4()
    try:
        for member in members:
            if member.error is not None:
                rejected.append({"name": member.name, "detail": member.error})
                continue
            try:
                stored.append(original_store(owner=owner, data=member.data,
                                             filename=member.name))
            except InvalidInput as exc:
                rejected.append({"name": member.name, "detail": exc.detail})
        if not stored:
            reasons = "; ".join(f"{r['name']}: {r['detail']}" for r in rejected[:5])
            raise InvalidInput(f"No acceptable image in the batch ({reasons})")
        return _create_rows(batch_id=batch_id, owner=owner, stored=stored, rejected=rejected,
                            options=options, model=model, webhook_url=webhook_url)
    except BaseException:
        # Only if the rows were not committed: after the commit the originals belong to tasks.
        if not Batch.objects.filter(pk=batch_id).exists():
            for item in stored:
                storage.delete_quietly(item.key)
        raise


def _create_rows(*, batch_id, owner, stored: list[Original], rejected, options, model,
                 webhook_url) -> BatchCreated:
    with transaction.atomic():
        # The cap and the credits again, under a lock on the user's row, so concurrent batches
        # cannot pass them.
        lock_owner(owner_id=owner.pk)
        check_batch_quota(owner=owner, adding=len(stored))
        check_monthly_credits(owner=owner, charge=len(stored) * selectors.credit_cost(options))
        batch = Batch.objects.create(
            id=batch_id, owner=owner, model=model or settings.QUICKBG_MODEL,
            options=options or {}, webhook_url=webhook_url or "", size=len(stored),
            rejected=rejected,
        )
        tasks = []
        for item in stored:
            upload = upload_row_create(owner=owner, original=item)
            task = Task.objects.create(upload=upload, batch=batch, model=batch.model,
                                       options=batch.options)
            task_enqueue(task=task)
            tasks.append(task)
    return BatchCreated(batch=batch, tasks=tasks, rejected=rejected)


def batch_retry(*, batch: Batch) -> list[Task]:
    """Requeue the failed members, each through ``task_retry`` (the same rules as a task
    retry), within the user's cap on unfinished batch members."""
    failed = list(Task.objects.filter(batch=batch, status=Status.FAILED))
    if not failed:
        raise Conflict("This batch has no failed members to retry")
    check_batch_quota(owner=batch.owner, adding=len(failed))
    retried = []
    for task in failed:
        try:
            retried.append(task_retry(task=task))
        except Conflict:  # retried meanwhile by someone else
            continue
    return retried


def batch_reprocess(*, batch: Batch) -> Batch:
    """A NEW batch over the same uploads with the current default model; the old batch and its
    results stay as they were (like ``task_reprocess``). Members whose images retention deleted
    are left out."""
    members = list(selectors.batch_members(batch))
    if any(task.status in selectors.IN_FLIGHT for task in members):
        raise Conflict(f"Batch {batch.pk} still has members queued or processing; not reprocessed")
    members = [task for task in members
               if task.status != Status.EXPIRED and task.upload.expired_at is None]
    if not members:
        raise Conflict(f"Batch {batch.pk} has no members whose images are still stored")
    with transaction.atomic():
        lock_owner(owner_id=batch.owner_id)
        # The lock order of services.tasks (owner, uploads, tasks); retention skips these now.
        locked = (Upload.objects.select_for_update().order_by("pk")
                  .filter(pk__in=[task.upload_id for task in members])
                  .values_list("expired_at", flat=True))
        if any(expired is not None for expired in locked):
            raise Conflict(f"Batch {batch.pk}: images of some members were just deleted by "
                           "retention; reprocess again to leave them out")
        check_batch_quota(owner=batch.owner, adding=len(members))
        check_monthly_credits(owner=batch.owner, charge=sum(
            selectors.credit_cost(task.options) for task in members))
        new = Batch.objects.create(
            owner=batch.owner, model=settings.QUICKBG_MODEL, options=batch.options,
            webhook_url=batch.webhook_url, size=len(members),
        )
        for task in members:
            task_enqueue(task=Task.objects.create(
                upload_id=task.upload_id, batch=new, model=new.model, options=task.options))
    return new


def batch_member_finished(*, batch_id) -> bool:
    """After a member's end (``services.tasks.task_finished``; the reconciler's sweep too): if
    no member is left in flight, mark the batch finished (once: a guarded update) and emit
    ``batch.completed``. Returns whether it fired."""
    batch = selectors.batches_with_counts(Batch.objects.filter(pk=batch_id)).first()
    if batch is None:
        return False
    counts = selectors.batch_counts(batch)
    if counts[Status.QUEUED] or counts[Status.PROCESSING]:
        return False
    if Batch.objects.filter(pk=batch_id, completed_event_at=None).update(
            completed_event_at=timezone.now()) != 1:
        return False
    data = {"batch_id": str(batch.pk), "status": selectors.batch_status(counts),
            "count": batch.size, "counts": counts}
    webhooks.event_emit(owner=batch.owner, event_type="batch.completed", data=data,
                        url=batch.webhook_url or None)
    return True
