"""Everything about the RQ queue, in one place: access, enqueueing, the retry policy, the
serializer, the job timeout, and the worker liveness protocol.

- **Access, one queue per model**: a task's job goes on its model's queue,
  ``task_queue_name(model)`` = ``{QUICKBG_QUEUE}:{model}``, or for a batch member
  ``task_queue_name(model, batch=True)`` = ``{QUICKBG_QUEUE}-batch:{model}``
  (``queue_name_for`` picks for a task; ``get_queue()`` is the default model's interactive
  queue). ``worker_queue_names(models)`` lists a worker's queues in the order it takes them:
  every interactive queue of its models, webhooks, then their batch queues, so a batch job
  starts only when no interactive job of those models waits. ``all_task_queue_names()`` lists
  every model's queues (for deployment manifests and autoscalers). Their class is
  ``ResilientQueue`` (``RQ["QUEUE_CLASS"]``) and its serializer is JSON
  (``RQ_SERIALIZER`` in quickbg/backends.py, the one place it is named); code that needs the
  serializer takes ``queue.serializer``.
- **Enqueueing**: ``enqueue_task`` puts a task's job on the queue once the current transaction
  commits (django-rq 4's ``COMMIT_MODE``). The job's only argument is the task id. Recording the
  job id on the task row is the services' part (``services.tasks.task_enqueue``).
- **Retries**: ``retry_policy()``: RQ's ``Retry`` with exponential backoff, for transient failures.
- **Completion signal**: ``announce_task_done(task_id)`` (``services.tasks.task_finished``, once
  the outcome is committed) pushes to a per-task Redis list that ``wait_task_done(task_id,
  timeout)`` BLPOPs: the synchronous remove.bg endpoint waits on it instead of polling the
  database. A list, not
  pub/sub, so an announcement made before the waiter starts listening is not lost; it expires
  after ``DONE_TTL`` s when nobody waits.
- **Priority**: synchronous requests enqueue at the front of the interactive queue
  (``at_front=True``); workers take their queues in order, interactive first, so a synchronous
  request waits at most for the jobs already running.
- **Webhook share**: ``webhook_slot_acquire``/``webhook_slot_release``: at most
  ``QUICKBG_WEBHOOK_CONCURRENCY`` image workers hold a webhook slot at once, and only a holder
  takes jobs from the webhooks queue (``removal.worker``), so deliveries never occupy more than
  that many image workers. A slot whose holder's liveness key is gone is taken over.
- **Liveness**: every worker sets ``alive_key(name)`` every ``ALIVE_INTERVAL`` s with a TTL of
  ``ALIVE_TTL`` s (``removal.worker``); the reconciler (``removal.reconcile``) reads it to tell a
  dead worker's job from a slow one. ``RECONCILE_LOCK`` elects the one worker that reconciles.
  Beside it, ``serves_key(name)`` holds the models the worker serves (same TTL);
  ``served_models()`` is the union over live workers (``GET /api/v1/models``, and the check
  that refuses a model no worker serves).
"""

from __future__ import annotations

import logging
import time

import django_rq
import redis.exceptions
from django.conf import settings
from django.db import transaction
from django_rq.queues import DjangoRQ
from rq import Retry, get_current_job

from quickbg.backends import model_queue
from removal import modelstore

logger = logging.getLogger(__name__)

JOB_FUNC = "removal.jobs.process_task"
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600

ALIVE_PREFIX = "quickbg:alive:"
ALIVE_INTERVAL = 3
ALIVE_TTL = 10
RECONCILE_LOCK = "quickbg:reconcile-lock"
DONE_PREFIX = "quickbg:done:"
DONE_TTL = 300
WAIT_SLICE = 2.0
# Held for a day by the worker that ran retention (``removal.worker``): one run per day in all.
RETENTION_LOCK = "quickbg:retention-lock"
RETENTION_PERIOD = 24 * 3600
WEBHOOK_SLOT_PREFIX = "quickbg:webhook-slot:"
# Take a free slot, or one whose holder's liveness key is gone (it died holding it).
_SLOT_ACQUIRE = """
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if (not holder) or holder == ARGV[1] or redis.call('EXISTS', ARGV[3] .. holder) == 0 then
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
    return key
  end
end
return false
"""
_SLOT_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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


def task_queue_name(model: str | None = None, *, batch: bool = False) -> str:
    """The queue of ``model``'s tasks (default: ``QUICKBG_MODEL``): ``{QUICKBG_QUEUE}:{model}``,
    or ``{QUICKBG_QUEUE}-batch:{model}`` for batch members."""
    base = settings.QUICKBG_BATCH_QUEUE if batch else settings.QUICKBG_QUEUE
    return model_queue(base, model or settings.QUICKBG_MODEL)


def get_queue(name: str | None = None) -> ResilientQueue:
    """The queue ``name``; default: the default model's interactive queue."""
    return django_rq.get_queue(name or task_queue_name())


def get_batch_queue(model: str | None = None) -> ResilientQueue:
    return django_rq.get_queue(task_queue_name(model, batch=True))


def queue_name_for(*, batch_id, model: str | None = None) -> str:
    """The queue a task's job goes on: its model's, the batch one for batch members. A model no
    longer in the catalogue goes on the default model's queue, where its job fails the task
    with a readable message instead of sitting on a queue nobody takes."""
    if model not in modelstore.MODELS:
        model = None
    return task_queue_name(model, batch=bool(batch_id))


def all_task_queue_names() -> list[str]:
    """Every model's interactive and batch queue (what a worker serving everything takes)."""
    return worker_queue_names(sorted(modelstore.MODELS), webhooks=False)


def worker_queue_names(models: list[str] | None = None, *, webhooks: bool = True) -> list[str]:
    """The queues a worker serving ``models`` (default: the default model) listens to, highest
    priority first (RQ takes them in this order): the models' interactive queues, webhooks,
    then the models' batch queues."""
    models = models or [settings.QUICKBG_MODEL]
    names = [task_queue_name(model) for model in models]
    if webhooks and webhooks_queue_name() in settings.RQ_QUEUES:
        names.append(webhooks_queue_name())
    names += [task_queue_name(model, batch=True) for model in models]
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


SERVES_PREFIX = "quickbg:serves:"


def serves_key(worker_name: str) -> str:
    """Models a live worker serves (comma-separated), kept beside its liveness key."""
    return f"{SERVES_PREFIX}{settings.QUICKBG_QUEUE}:{worker_name}"


def served_models() -> dict[str, int]:
    """``{model: number of live workers serving it}`` for this deployment (``QUICKBG_QUEUE``).
    Raises ``redis.exceptions.RedisError`` when Redis is unreachable."""
    connection = get_queue().connection
    counts: dict[str, int] = {}
    keys = list(connection.scan_iter(match=f"{SERVES_PREFIX}{settings.QUICKBG_QUEUE}:*",
                                     count=500))
    for value in connection.mget(keys) if keys else []:
        for model in (value or b"").decode().split(","):
            if model:
                counts[model] = counts.get(model, 0) + 1
    return counts


def done_key(task_id) -> str:
    return f"{DONE_PREFIX}{settings.QUICKBG_QUEUE}:{task_id}"


def announce_task_done(task_id) -> None:
    """Tell a waiting ``wait_task_done`` that the task reached completed or failed. Call it
    after the outcome is committed. Never raises: a lost signal only makes the waiter time out,
    and the task's row is still right."""
    try:
        with get_queue().connection.pipeline() as pipe:
            pipe.lpush(done_key(task_id), "1")
            pipe.expire(done_key(task_id), DONE_TTL)
            pipe.execute()
    except redis.exceptions.RedisError as exc:
        logger.warning("could not announce task %s done: %s", task_id, exc)


def wait_task_done(task_id, timeout: float) -> bool:
    """Block until the task is announced done (True) or ``timeout`` seconds pass (False).

    BLPOP in slices of ``WAIT_SLICE`` s: the queue's connection has a socket timeout (5 s) that
    a longer blocking call would hit.
    """
    connection = get_queue().connection
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if connection.blpop([done_key(task_id)], timeout=min(left, WAIT_SLICE)) is not None:
            return True
    return False


# --- Webhook deliveries (their own queue, so a slow receiver never holds the task queue) -------

WEBHOOK_JOB_FUNC = "removal.jobs.deliver_webhook"


def webhook_slot_acquire(connection, worker_name: str, *, hold_seconds: int) -> str | None:
    """One of the ``QUICKBG_WEBHOOK_CONCURRENCY`` webhook slots for ``worker_name`` (its key),
    held for ``hold_seconds`` at most; ``None`` when every slot has a live holder."""
    keys = [f"{WEBHOOK_SLOT_PREFIX}{settings.QUICKBG_QUEUE}:{n}"
            for n in range(settings.QUICKBG_WEBHOOK_CONCURRENCY)]
    key = connection.eval(_SLOT_ACQUIRE, len(keys), *keys, worker_name, max(1, hold_seconds),
                          ALIVE_PREFIX)
    return key.decode() if isinstance(key, bytes) else key


def webhook_slot_release(connection, key: str, worker_name: str) -> None:
    connection.eval(_SLOT_RELEASE, 1, key, worker_name)


def webhooks_queue_name() -> str:
    return f"{settings.QUICKBG_QUEUE}-webhooks"


def get_webhooks_queue() -> ResilientQueue:
    return django_rq.get_queue(webhooks_queue_name())


def enqueue_webhook(*, delivery_id, job_id: str, at=None) -> None:
    """Queue ``deliver_webhook(delivery_id)`` as ``job_id`` after commit; at ``at`` if given.

    A scheduled job (``at``) is put on RQ's scheduled registry by ``on_commit`` ourselves
    (django-rq defers only ``enqueue_call``). Redis down at that moment leaves the delivery
    ``pending`` in the database, where the reconciler finds it.
    """
    webhooks = get_webhooks_queue()
    timeout = int(settings.QUICKBG_WEBHOOK_TIMEOUT) + 30
    if at is None:
        webhooks.enqueue_call(func=WEBHOOK_JOB_FUNC, args=(str(delivery_id),), job_id=job_id,
                              timeout=timeout, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
        return

    def schedule():
        try:
            webhooks.enqueue_at(at, WEBHOOK_JOB_FUNC, str(delivery_id), job_id=job_id,
                                job_timeout=timeout, result_ttl=RESULT_TTL,
                                failure_ttl=FAILURE_TTL)
        except redis.exceptions.RedisError as exc:
            logger.error("Redis unavailable, webhook job %s left for the reconciler: %s",
                         job_id, exc)

    transaction.on_commit(schedule)
