"""Tasks: queue, claim, progress, complete, fail, recover, retry and reprocess.

**Lock order**, everywhere a task is put back in flight: the owner's user row
(``lock_owner``), then the upload's row (``lock_upload``), then the task's. Retention and
deletion lock uploads only (retention with SKIP LOCKED), so a retry and an expiry of the same
upload never interleave: whichever takes the upload first decides, and the other sees it.

A worker's side of a task is a ``Claim``: ``task_claim`` moves the task from queued to
processing by a guarded update, and only that attempt's claim may record progress, the result or
the failure. The reconciler recovers tasks no live job holds through ``task_recover``.

**A task's end has one owner**, ``task_finished``: every path that ends a task (``task_complete``,
``task_fail``, ``task_recover`` failing it, a reused result, deleting uploads, retention) calls
it, and it alone wakes the waiters, emits the webhook event and finishes the batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from removal import queue, selectors
from removal.errors import Conflict, OutOfCredits, TimedOut, TooManyTasks
from removal.models import Batch, Task, Upload
from removal.services import webhooks
from removal.serving import model_require

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


def check_monthly_credits(*, owner, charge: float) -> None:
    """Refuse new work that would take the caller past ``QUICKBG_MONTHLY_CREDITS`` (0 = off)."""
    limit = settings.QUICKBG_MONTHLY_CREDITS
    if not limit:
        return
    used = selectors.credits_used(owner=owner)
    if used + charge > limit:
        raise OutOfCredits(
            f"Your monthly credits are used up ({used:g} of {limit:g}); they renew on the 1st"
        )


def task_wait(*, task: Task, timeout: float) -> Task:
    """Wait (without polling the database) until ``task`` completes or fails; return it fresh.

    Raises ``TimedOut`` (with the task id to poll) when it is still unfinished after
    ``timeout`` seconds.
    """
    queue.wait_task_done(task.pk, timeout)
    task = Task.objects.select_related("upload").get(pk=task.pk)
    if task.status in selectors.IN_FLIGHT:
        raise TimedOut(
            f"The image is still being processed after {timeout:g} s; poll "
            f"GET /api/v1/tasks/{task.pk} for the result", task_id=str(task.pk),
        )
    return task


# --- Queueing ----------------------------------------------------------------------------------


def task_enqueue(*, task: Task, at_front: bool = False) -> str:
    """Record a new job id on the task and queue the job once the transaction commits.

    The job goes on the task's model's queue, a batch member's on the model's batch queue
    (``queue.queue_name_for``), so a retry, a recovery or a reprocess of it stays below the
    interactive queue and reaches a worker that serves the model.

    The job id is generated here (inside a transaction django-rq's ``enqueue`` returns ``None``).
    """
    job_id = f"task-{task.id}-{uuid.uuid4().hex[:8]}"
    Task.objects.filter(pk=task.pk).update(rq_job_id=job_id, updated_at=timezone.now())
    task.rq_job_id = job_id
    queue.enqueue_task(task_id=task.id, job_id=job_id, at_front=at_front,
                       queue_name=queue.queue_name_for(batch_id=task.batch_id,
                                                       model=task.model))
    return job_id


def task_retry(*, task: Task, model: str | None = None) -> Task:
    """Put a failed task back on the queue (owner via the API, staff via the admin); with
    ``model``, on that model (``serving.model_require`` checks it is served).

    A retry counts against the owner's unfinished-task cap, checked under the same lock on the
    owner's row that uploads take, and is refused (``Conflict``) once the task has been claimed
    ``QUICKBG_MAX_TASK_ATTEMPTS`` times in its life. ``attempts`` starts again from zero (RQ's
    retry budget for transient errors); ``lifetime_attempts`` never does.
    """
    limit = settings.QUICKBG_MAX_TASK_ATTEMPTS
    changes = {"model": model_require(model)} if model else {}
    with transaction.atomic():
        owner = lock_owner(owner_id=Task.objects.values_list("upload__owner_id", flat=True)
                           .get(pk=task.pk))
        lock_upload(upload_id=task.upload_id)
        current = Task.objects.get(pk=task.pk)
        if current.status != Status.FAILED:
            raise Conflict(f"Only failed tasks can be retried; this one is {current.status}")
        if current.lifetime_attempts >= limit:
            raise Conflict(
                f"This task has been processed {current.lifetime_attempts} times (limit "
                f"{limit}); it cannot be retried again. Upload the image again if it should "
                "be processed."
            )
        check_task_quota(owner=owner)
        check_monthly_credits(owner=owner, charge=selectors.credit_cost(current.options))
        moved = Task.objects.filter(pk=task.pk, status=Status.FAILED).update(
            status=Status.QUEUED, progress=0, attempts=0, error_message="", started_at=None,
            finished_at=None, claim_token=None, updated_at=timezone.now(), **changes,
        )
        if moved != 1:
            raise Conflict(f"Only failed tasks can be retried; this one is {task.status}")
        task.refresh_from_db()
        task_enqueue(task=task)
    return task


def lock_owner(*, owner_id):
    """Lock the owner's user row for the rest of the transaction and return it.

    Uploads and retries take this lock before they re-check the unfinished-task cap, so
    concurrent requests of one user cannot overshoot it. A deactivated owner (an account being
    deleted, or disabled by staff) is refused here, so a request that passed authentication just
    before creates nothing (``Conflict``); a deleted one is ``DoesNotExist``.
    """
    owner = get_user_model().objects.select_for_update().get(pk=owner_id)
    if not owner.is_active:
        raise Conflict("This account is deactivated or being deleted; nothing was created")
    return owner


def lock_upload(*, upload_id) -> Upload:
    """Lock the upload's row (after ``lock_owner``: see the lock order above) and return it;
    an upload whose images retention deleted is a ``Conflict``."""
    upload = Upload.objects.select_for_update().get(pk=upload_id)
    if upload.expired_at is not None:
        raise Conflict("This task expired: its original image was deleted; upload it again")
    return upload


def task_reprocess(*, task: Task, model: str | None = None) -> Task:
    """Queue a NEW task on the task's upload with ``model`` (default: the current default
    model; ``serving.model_require`` checks it).

    The old task is left as it was (its result stays downloadable); the new task keeps the old
    one's output options. A task that is still queued or processing, or whose upload already has
    one, is refused (``Conflict``).
    """
    if task.status in selectors.IN_FLIGHT:
        raise Conflict(f"Task {task.pk} is still {task.status}; not reprocessed")
    if task.status == Status.EXPIRED or task.upload.expired_at is not None:
        raise Conflict(f"Task {task.pk} expired: its original image was deleted")
    if selectors.upload_has_task_in_flight(upload_id=task.upload_id):
        raise Conflict(f"Upload {task.upload_id} already has a task queued or processing")
    model = model_require(model)
    with transaction.atomic():
        lock_upload(upload_id=task.upload_id)
        if selectors.upload_has_task_in_flight(upload_id=task.upload_id):
            raise Conflict(f"Upload {task.upload_id} already has a task queued or processing")
        new_task = Task.objects.create(
            upload_id=task.upload_id, model=model, options=task.options,
            reprocess_of_id=task.pk,
        )
        task_enqueue(task=new_task)
    return new_task


# --- The worker's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a worker holds after claiming a task: only this attempt may finish it."""

    task: Task
    attempt: int
    token: uuid.UUID


def task_claim(*, task_id, job_id: str | None = None) -> Claim | None:
    """Move a queued task to processing. ``None`` when it is not queued (done, or taken).

    ``job_id`` is the RQ job doing the work: recorded in the same update, so the reconciler
    checks the job that really holds the task (not a newer one that found it taken).
    """
    now = timezone.now()
    token = uuid.uuid4()
    changes = dict(status=Status.PROCESSING, attempts=F("attempts") + 1,
                   lifetime_attempts=F("lifetime_attempts") + 1, claim_token=token, progress=5,
                   started_at=now, updated_at=now, error_message="")
    if job_id:
        changes["rq_job_id"] = job_id
    claimed = Task.objects.filter(pk=task_id, status=Status.QUEUED).update(**changes)
    if claimed != 1:
        return None
    task = Task.objects.select_related("upload").get(pk=task_id)
    return Claim(task=task, attempt=task.attempts, token=token)


def _held(claim: Claim):
    """The task row, if this claim still holds it (its token, not its attempt number: a retry
    resets the count, so an old worker's number can match a newer claim)."""
    return Task.objects.filter(pk=claim.task.pk, status=Status.PROCESSING,
                               claim_token=claim.token)


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
        return False
    task_finished(tasks=[claim.task])
    return True


def task_fail(*, claim: Claim, message: str, processing_time: float | None = None,
              metrics: dict | None = None) -> bool:
    now = timezone.now()
    done = _held(claim).update(
        status=Status.FAILED, error_message=message[:2000], processing_time=processing_time,
        metrics=metrics or {}, finished_at=now, updated_at=now,
    )
    if done != 1:
        return False
    task_finished(tasks=[claim.task])
    return True


def task_release_for_retry(*, claim: Claim, message: str) -> bool:
    """After a transient failure: hand the task back to the queue for RQ's scheduled retry."""
    return _held(claim).update(
        status=Status.QUEUED, progress=0, error_message=message[:2000],
        updated_at=timezone.now(),
    ) == 1


def task_recover(*, task_id, status: str, attempts: int,
                 timed_out_after: int | None = None) -> str:
    """Recover a task that no live job holds (the reconciler calls this).

    A ``processing`` task whose worker died - or whose job hung past its timeout
    (``timed_out_after`` seconds) - goes back to ``queued``, or to ``failed`` once it has used
    every attempt, so a poison image cannot kill or block workers forever. Guarded on the
    status and attempt count the caller saw, so a worker that is in fact alive keeps its claim.
    Returns ``"requeued"``, ``"failed"`` or ``"skipped"``.
    """
    now = timezone.now()
    rows = Task.objects.filter(pk=task_id, status=status, attempts=attempts)
    if status == Status.PROCESSING and attempts >= queue.max_attempts():
        if timed_out_after is not None:
            message = f"Processing timed out after {timed_out_after} s"
        else:
            message = (f"Processing stopped unexpectedly {attempts} times (worker crashed or "
                       "was killed); giving up")
        moved = rows.update(
            status=Status.FAILED, finished_at=now, updated_at=now, error_message=message,
        )
        if not moved:
            return "skipped"
        # A synchronous request waiting for it answers now, not at its timeout.
        task_finished(tasks=Task.objects.filter(pk=task_id).only("id", "batch_id"))
        return "failed"
    with transaction.atomic():
        moved = rows.update(status=Status.QUEUED, progress=0, updated_at=now)
        if not moved:
            return "skipped"
        # At the front: the task already waited its turn once, and the recovery bound should not
        # grow with the queue's depth.
        task_enqueue(task=Task.objects.get(pk=task_id), at_front=True)
    return "requeued"


# --- A task's end -----------------------------------------------------------------------------

ENDED = (Status.COMPLETED, Status.FAILED)


def task_finished(*, tasks: Iterable[Task]) -> None:
    """What follows tasks reaching their end, run once the change that ended them is committed
    (at once outside a transaction). The one owner of it: every path that ends a task calls
    this, and nothing else does any of it.

    - a task now ``completed`` or ``failed`` wakes its synchronous waiters
      (``queue.announce_task_done``) and emits its webhook event (``task.completed`` or
      ``task.failed``; ``webhooks.task_event_emit`` emits one outcome once);
    - a task deleted meanwhile (its upload or account deleted) or expired by retention has no
      event, and is not announced;
    - each batch of these tasks not yet finished is finished when no member is left in flight
      (``batches.batch_member_finished``: ``batch.completed``, once by a guarded update).

    Only ``pk`` and ``batch_id`` of the tasks are read, when called (the rows may be deleted by
    the time it runs). A failing step is logged and the next one runs: the outcome is recorded
    already, and the reconciler's batch sweep finishes a batch left open.
    """
    ended = [(task.pk, task.batch_id) for task in tasks]
    if ended:
        transaction.on_commit(lambda: _follow_up(ended))


def _follow_up(ended: list[tuple]) -> None:
    from removal.services import batches  # batches builds on this module

    task_ids = [task_id for task_id, _ in ended]
    for task_id in Task.objects.filter(pk__in=task_ids, status__in=ENDED).values_list(
            "pk", flat=True):
        queue.announce_task_done(task_id)  # never raises
        try:
            webhooks.task_event_emit(task_id=task_id)
        except Exception:  # noqa: BLE001 - see task_finished
            logger.exception("task %s: could not record its webhook event", task_id)
    batch_ids = {batch_id for _, batch_id in ended if batch_id}
    for batch_id in (Batch.objects.filter(pk__in=batch_ids, completed_event_at=None)
                     .values_list("pk", flat=True) if batch_ids else ()):
        try:
            batches.batch_member_finished(batch_id=batch_id)
        except Exception:  # noqa: BLE001 - see task_finished
            logger.exception("batch %s: could not check it for completion", batch_id)
