"""Find tasks the database says are queued or processing but that no live job holds.

The database is the source of truth; Redis is only transport and may lose everything (a restart
without persistence, a FLUSHALL, a worker SIGKILLed mid-job). A task is *held* when:

- its RQ job exists and is queued (and really in the queue's list), deferred, or scheduled (a
  retry waiting for its interval, and not overdue by more than the grace period); or
- its job is started by a worker whose liveness key (``queue.alive_key(worker)``, refreshed every
  few seconds by a thread in each worker, see ``removal.worker``) still exists.

Anything else older than a grace period is recovered through ``services.tasks.task_recover``:
processing → queued (or failed after too many attempts), then enqueued again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from removal.models import Task
from removal.queue import alive_key, get_queue, queue_name_for
from removal.services.batches import batch_member_finished
from removal.services.tasks import task_recover

logger = logging.getLogger(__name__)

WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


@dataclass
class Report:
    checked: int = 0
    held: int = 0
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def is_held(task: Task, queue, queued_ids: set[str], *, grace_seconds: int = 30) -> bool:
    """``queued_ids``: the job ids the queue lists right now (read once per pass)."""
    if not task.rq_job_id:
        return False
    if task.rq_job_id in queued_ids:
        return True
    connection = queue.connection
    try:
        job = Job.fetch(task.rq_job_id, connection=connection, serializer=queue.serializer)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in WAITING:
        # Marked queued but not in the snapshot: either moved there since (a scheduled retry
        # coming due) or lost with the list. Ask the queue once more.
        if status == JobStatus.QUEUED:
            return connection.lpos(queue.key, job.id) is not None
        if status == JobStatus.SCHEDULED:
            # A retry waiting for its interval - unless no scheduler moved it when it was due.
            try:
                due = queue.scheduled_job_registry.get_scheduled_time(job)
            except NoSuchJobError:
                return False
            return due > timezone.now() - timedelta(seconds=grace_seconds)
        return True
    if status == JobStatus.STARTED:
        return bool(job.worker_name) and bool(connection.exists(alive_key(job.worker_name)))
    return False


def reconcile(*, grace_seconds: int = 30, dry_run: bool = False) -> Report:
    """Recover every stale queued/processing task. Safe to run from many processes at once:
    every change is a guarded update."""
    # Each task's job is on the queue ``queue_name_for`` picks (the batch queue for members).
    queues = {name: get_queue(name) for name in
              (settings.QUICKBG_QUEUE, settings.QUICKBG_BATCH_QUEUE)}
    queued_ids = {name: set(q.get_job_ids()) for name, q in queues.items()}
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    report = Report()
    candidates = Task.objects.filter(
        status__in=[Task.Status.QUEUED, Task.Status.PROCESSING], updated_at__lt=cutoff
    ).only("id", "status", "attempts", "rq_job_id", "updated_at", "batch_id")
    for task in candidates.iterator():
        report.checked += 1
        name = queue_name_for(batch_id=task.batch_id)
        if is_held(task, queues[name], queued_ids[name], grace_seconds=grace_seconds):
            report.held += 1
            continue
        if dry_run:
            report.requeued.append(str(task.pk))
            continue
        outcome = task_recover(task_id=task.pk, status=task.status, attempts=task.attempts)
        if outcome == "requeued":
            report.requeued.append(str(task.pk))
        elif outcome == "failed":
            report.failed.append(str(task.pk))
            if task.batch_id:
                batch_member_finished(batch_id=task.batch_id)
    if report.requeued or report.failed:
        logger.warning("reconcile: requeued %s, failed %s (of %s checked)",
                       len(report.requeued), len(report.failed), report.checked)
    return report
