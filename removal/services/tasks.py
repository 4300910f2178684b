"""Tasks: queue, claim, progress, complete, fail, recover, retry and reprocess.

A worker's side of a task is a ``Claim``: ``task_claim`` moves the task from queued to
processing by a guarded update, and only that attempt's claim may record progress, the result or
the failure. The reconciler recovers tasks no live job holds through ``task_recover``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from removal import queue, selectors
from removal.errors import Conflict, TooManyTasks
from removal.models import Task

logger = logging.getLogger(__name__)

Status = Task.Status


def check_task_quota(*, owner) -> None:
    """Refuse new work while the caller already has too many unfinished tasks."""
    unfinished = selectors.unfinished_task_count(owner=owner)
    limit = settings.QUICKBG_MAX_QUEUED_TASKS
    if unfinished >= limit:
        raise TooManyTasks(
            f"You have {unfinished} unfinished tasks (limit {limit}); wait for some to finish",
            retry_after=30,
        )


# --- Queueing ----------------------------------------------------------------------------------


def task_enqueue(*, task: Task, at_front: bool = False) -> str:
    """Record a new job id on the task and queue the job once the transaction commits.

    A batch member goes on the batch queue (``queue.queue_name_for``), so a retry, a recovery
    or a reprocess of it stays below the interactive queue.

    The job id is generated here (inside a transaction django-rq's ``enqueue`` returns ``None``).
    """
    job_id = f"task-{task.id}-{uuid.uuid4().hex[:8]}"
    Task.objects.filter(pk=task.pk).update(rq_job_id=job_id, updated_at=timezone.now())
    task.rq_job_id = job_id
    queue.enqueue_task(task_id=task.id, job_id=job_id, at_front=at_front,
                       queue_name=queue.queue_name_for(batch_id=task.batch_id))
    return job_id


def task_retry(*, task: Task) -> Task:
    """Put a failed task back on the queue (owner via the API, staff via the admin)."""
    with transaction.atomic():
        # A retry gets the full retry budget again: attempts count from zero.
        moved = Task.objects.filter(pk=task.pk, status=Status.FAILED).update(
            status=Status.QUEUED, progress=0, attempts=0, error_message="", started_at=None,
            finished_at=None, updated_at=timezone.now(),
        )
        if moved != 1:
            raise Conflict(f"Only failed tasks can be retried; this one is {task.status}")
        task.refresh_from_db()
        task_enqueue(task=task)
    return task


def task_reprocess(*, task: Task) -> Task:
    """Queue a NEW task on the task's upload with the current default model.

    The old task is left as it was (its result stays downloadable); the new task keeps the old
    one's output options. A task that is still queued or processing, or whose upload already has
    one, is refused (``Conflict``).
    """
    if task.status in selectors.IN_FLIGHT:
        raise Conflict(f"Task {task.pk} is still {task.status}; not reprocessed")
    if selectors.upload_has_task_in_flight(upload_id=task.upload_id):
        raise Conflict(f"Upload {task.upload_id} already has a task queued or processing")
    with transaction.atomic():
        new_task = Task.objects.create(
            upload_id=task.upload_id, model=settings.QUICKBG_MODEL, options=task.options
        )
        task_enqueue(task=new_task)
    return new_task


# --- The worker's side ------------------------------------------------------------------------


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
    if status == Status.PROCESSING and attempts >= queue.max_attempts():
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
