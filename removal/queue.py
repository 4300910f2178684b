"""Everything about the RQ queue, in one place: access, enqueueing, the retry policy, the
serializer, the job timeout, and the worker liveness protocol.

- **Access**: ``get_queue()``, the interactive queue named by ``QUICKBG_QUEUE``, and
  ``get_batch_queue()``, ``QUICKBG_BATCH_QUEUE`` (``{QUICKBG_QUEUE}-batch``) for batch members;
  ``worker_queue_names()`` lists them in the order workers take them, so a batch job starts
  only when the interactive queue is empty. ``queue_for_task`` says which one a task uses. Their
  class is
  ``ResilientQueue`` (``RQ["QUEUE_CLASS"]``) and its serializer is JSON
  (``RQ_QUEUES[...]["SERIALIZER"]`` in settings, the one place it is named); code that needs the
  serializer takes ``queue.serializer``.
- **Enqueueing**: ``enqueue_task`` puts a task's job on the queue once the current transaction
  commits (django-rq 4's ``COMMIT_MODE``). The job's only argument is the task id. Recording the
  job id on the task row is the services' part (``services.tasks.task_enqueue``).
- **Retries**: ``retry_policy()``: RQ's ``Retry`` with exponential backoff, for transient failures.
- **Liveness**: every worker sets ``alive_key(name)`` every ``ALIVE_INTERVAL`` s with a TTL of
  ``ALIVE_TTL`` s (``removal.worker``); the reconciler (``removal.reconcile``) reads it to tell a
  dead worker's job from a slow one. ``RECONCILE_LOCK`` elects the one worker that reconciles.
"""

from __future__ import annotations

import logging

import django_rq
import redis.exceptions
from django.conf import settings
from django_rq.queues import DjangoRQ
from rq import Retry, get_current_job

logger = logging.getLogger(__name__)

JOB_FUNC = "removal.jobs.process_task"
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600

ALIVE_PREFIX = "quickbg:alive:"
ALIVE_INTERVAL = 3
ALIVE_TTL = 10
RECONCILE_LOCK = "quickbg:reconcile-lock"


class ResilientQueue(DjangoRQ):
    """django-rq's queue, tolerant of Redis being down at enqueue time.

    django-rq defers ``enqueue`` until the transaction commits; if Redis is unreachable then, the
    task row is already committed as ``queued``. Raising would turn an accepted upload into a 500
    with an orphaned row, so the error is logged and the reconciler (run by every worker, and by
    ``reconcile_tasks``) enqueues the task once Redis is back.
    """

    def original_enqueue_call(self, *args, **kwargs):
        try:
            return super().original_enqueue_call(*args, **kwargs)
        except redis.exceptions.RedisError as exc:  # down, read-only after failover, OOM...
            logger.error(
                "Redis unavailable, job %s left for the reconciler: %s", kwargs.get("job_id"), exc
            )
            return None


def get_queue(name: str | None = None) -> ResilientQueue:
    return django_rq.get_queue(name or settings.QUICKBG_QUEUE)


def get_batch_queue() -> ResilientQueue:
    return django_rq.get_queue(settings.QUICKBG_BATCH_QUEUE)


def queue_name_for(*, batch_id) -> str:
    """The queue a task's job goes on: the batch queue for batch members."""
    return settings.QUICKBG_BATCH_QUEUE if batch_id else settings.QUICKBG_QUEUE


def worker_queue_names() -> list[str]:
    """The queues a worker listens to, highest priority first (RQ takes them in this order)."""
    names = [settings.QUICKBG_QUEUE]
    webhooks = f"{settings.QUICKBG_QUEUE}-webhooks"
    if webhooks in settings.RQ_QUEUES:
        names.append(webhooks)
    names.append(settings.QUICKBG_BATCH_QUEUE)
    return names


def enqueue_task(*, task_id, job_id: str, at_front: bool = False,
                 queue_name: str | None = None) -> None:
    """Queue ``process_task(task_id)`` as ``job_id`` when the current transaction commits, on
    ``queue_name`` (default: the interactive queue)."""
    get_queue(queue_name).enqueue_call(
        func=JOB_FUNC,
        args=(str(task_id),),
        job_id=job_id,
        timeout=settings.QUICKBG_JOB_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=retry_policy(),
        at_front=at_front,
    )


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


def job_timeout() -> int:
    """The running RQ job's own timeout (set when it was enqueued), else the setting."""
    job = get_current_job()
    return int(job.timeout) if job is not None and job.timeout else settings.QUICKBG_JOB_TIMEOUT


def alive_key(worker_name: str) -> str:
    return f"{ALIVE_PREFIX}{worker_name}"
