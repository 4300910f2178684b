"""Find tasks the database says are queued or processing but that no live job holds.

The database is the source of truth; Redis is only transport and may lose everything (a restart
without persistence, a FLUSHALL, a worker SIGKILLed mid-job). A task is *held* when:

- its RQ job exists and is queued (and really in the queue's list), deferred, or scheduled (a
  retry waiting for its interval, and not overdue by more than the grace period); or
- its job is started by a worker whose liveness key (``queue.alive_key(worker)``, refreshed every
  few seconds by a thread in each worker, see ``removal.worker``) still exists, and it started
  less than its timeout plus the grace period ago.

Anything else older than a grace period is recovered through ``services.tasks.task_recover``:
processing → queued (or failed after too many attempts), then enqueued again.

The timeout bound catches a *hung* job: a worker that is alive (its liveness thread keeps
refreshing the key) but whose main thread is stuck in C code, where RQ's SIGALRM timeout never
runs. Such a job is treated as lost; when it has used its attempts the task fails with
"Processing timed out after N s". If the stuck worker ever wakes up, its claim token is stale and
it records nothing.

A task this pass fails ends through ``task_recover``, which runs ``services.tasks.task_finished``
(waiters, the webhook event, the batch) like every other end. Batches get a sweep too: every
batch not yet announced whose members have all ended (its last member's follow-up failed after
the outcome was committed, or its process died in between) is finished and announced
(``services.batches.batch_member_finished``; a guarded update, so never twice).

Webhook deliveries get the same pass on their own queue: a ``pending`` or ``sending`` attempt
that no job holds goes back on it (``services.webhooks.delivery_recover``; a retry keeps its due
time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from removal import selectors
from removal.models import Batch, Task, WebhookDelivery
from removal.queue import alive_key, get_queue, get_webhooks_queue, queue_name_for
from removal.services import webhooks
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
    deliveries_requeued: list[str] = field(default_factory=list)
    batches_finished: list[str] = field(default_factory=list)


HELD, LOST, HUNG = "held", "lost", "hung"


def is_held(item: Task | WebhookDelivery, queue, queued_ids: set[str], *,
            grace_seconds: int = 30) -> bool:
    """``queued_ids``: the job ids the queue lists right now (read once per pass). Works for
    anything with an ``rq_job_id`` on ``queue``: tasks, and webhook deliveries."""
    return hold(item, queue, queued_ids, grace_seconds=grace_seconds)[0] == HELD


def hold(item: Task | WebhookDelivery, queue, queued_ids: set[str], *,
         grace_seconds: int = 30) -> tuple[str, Job | None]:
    """``HELD`` by a live job, ``HUNG`` (started by a live worker longer ago than the job's
    timeout plus ``grace_seconds``), or ``LOST``; with the job, fetched from Redis at most once
    (``None`` when it was not needed or is gone)."""
    if not item.rq_job_id:
        return LOST, None
    if item.rq_job_id in queued_ids:
        return HELD, None
    try:
        job = Job.fetch(item.rq_job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return LOST, None
    if _is_held(job, queue, grace_seconds):
        return HELD, job
    if job.get_status(refresh=False) == JobStatus.STARTED and _overdue(job, grace_seconds):
        return HUNG, job
    return LOST, job


def _overdue(job: Job, grace_seconds: int) -> bool:
    if job.started_at is None or not job.timeout or int(job.timeout) < 0:
        return False
    limit = job.started_at + timedelta(seconds=int(job.timeout) + grace_seconds)
    return timezone.now() > limit


def _is_held(job: Job, queue, grace_seconds: int) -> bool:
    connection = queue.connection
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
        alive = bool(job.worker_name) and bool(connection.exists(alive_key(job.worker_name)))
        return alive and not _overdue(job, grace_seconds)
    return False


def reconcile(*, grace_seconds: int = 30, dry_run: bool = False) -> Report:
    """Recover every stale queued/processing task. Safe to run from many processes at once:
    every change is a guarded update."""
    # Each task's job is on the queue ``queue_name_for`` picks (its model's; the batch one for
    # members), each queue's job ids read once, when a task of it first comes up.
    queues, queued_ids = {}, {}
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    report = Report()
    candidates = Task.objects.filter(
        status__in=[Task.Status.QUEUED, Task.Status.PROCESSING], updated_at__lt=cutoff
    ).only("id", "status", "attempts", "rq_job_id", "updated_at", "batch_id", "model")
    for task in candidates.iterator():
        report.checked += 1
        name = queue_name_for(batch_id=task.batch_id, model=task.model)
        if name not in queues:
            queues[name] = get_queue(name)
            queued_ids[name] = set(queues[name].get_job_ids())
        queue = queues[name]
        state, job = hold(task, queue, queued_ids[name], grace_seconds=grace_seconds)
        if state == HELD:
            report.held += 1
            continue
        if dry_run:
            report.requeued.append(str(task.pk))
            continue
        timed_out_after = int(job.timeout) if state == HUNG else None
        if timed_out_after is not None:
            logger.error("reconcile: task %s job %s is past its %s s timeout on a live worker "
                         "(hung); recovering it", task.pk, task.rq_job_id, timed_out_after)
        outcome = task_recover(task_id=task.pk, status=task.status, attempts=task.attempts,
                               timed_out_after=timed_out_after)
        if outcome == "requeued":
            report.requeued.append(str(task.pk))
        elif outcome == "failed":  # task_recover ran services.tasks.task_finished
            report.failed.append(str(task.pk))
    _reconcile_deliveries(report, grace_seconds=grace_seconds, dry_run=dry_run)
    _finish_batches(report, cutoff=cutoff, dry_run=dry_run)
    if report.batches_finished:
        logger.warning("reconcile: finished %s batch(es) whose members had all ended",
                       len(report.batches_finished))
    if report.requeued or report.failed or report.deliveries_requeued:
        logger.warning("reconcile: requeued %s, failed %s (of %s checked), webhook deliveries "
                       "requeued %s", len(report.requeued), len(report.failed), report.checked,
                       len(report.deliveries_requeued))
    return report


BATCH_SWEEP = 500  # batches looked at per pass, oldest first


def _finish_batches(report: Report, *, cutoff, dry_run: bool) -> None:
    in_flight = Task.objects.filter(batch_id=OuterRef("pk"), status__in=selectors.IN_FLIGHT)
    ended = (Batch.objects.filter(completed_event_at=None, created_at__lt=cutoff)
             .exclude(Exists(in_flight)).order_by("created_at")
             .values_list("pk", flat=True)[:BATCH_SWEEP])
    for batch_id in ended:
        if dry_run or batch_member_finished(batch_id=batch_id):
            report.batches_finished.append(str(batch_id))


def _reconcile_deliveries(report: Report, *, grace_seconds: int, dry_run: bool) -> None:
    queue = get_webhooks_queue()
    queued_ids = set(queue.get_job_ids())
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    candidates = WebhookDelivery.objects.filter(
        status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.SENDING],
        updated_at__lt=cutoff,
    ).only("id", "status", "rq_job_id", "updated_at")
    for delivery in candidates.iterator():
        if is_held(delivery, queue, queued_ids, grace_seconds=grace_seconds):
            continue
        if dry_run or webhooks.delivery_recover(delivery_id=delivery.pk, status=delivery.status,
                                                updated_at=delivery.updated_at):
            report.deliveries_requeued.append(str(delivery.pk))
