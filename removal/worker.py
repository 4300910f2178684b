"""The RQ worker QuickBG runs: a non-forking ``SimpleWorker`` that keeps the model warm.

Why not RQ's default forking ``Worker``: it forks a work horse per job, and an ONNX Runtime
session must not be created before a fork (its thread pools do not survive it), so every job
would load the model again in a fresh horse (``bench/worker_class.py`` measures it).
``SimpleWorker`` runs jobs in its own process, where ``removal.runner.get_segmenter`` creates
a model's session on its first job and reuses it (at most ``QUICKBG_MAX_LOADED_MODELS``
sessions, the least recently used dropped: ``pipeline.sessions.LoadedModels``). The costs,
and what covers them:

- nothing kills a stuck job from outside: RQ's SIGALRM timeout still fires in this process, and
  the model run itself is bounded (see ``removal.pipeline.segment``);
- a crash takes the worker down: a process manager restarts it, ``--max-jobs`` recycles it, and
  the reconciler (below) gives its task to another worker.

**Webhooks never starve images.** An image worker takes jobs from the webhooks queue only while
it holds one of the ``QUICKBG_WEBHOOK_CONCURRENCY`` webhook slots (``queue.webhook_slot_acquire``,
default one slot for all image workers together); the others listen to the image queues alone and
look for a free slot every ``SLOT_RECHECK`` s. A holder alternates: after a delivery it takes an
image job first if one waits. Each delivery is bounded by ``QUICKBG_WEBHOOK_TIMEOUT`` (one deadline
for the whole exchange, ``removal.fetch``). Workers started with ``--webhooks-only`` deliver without
a slot: they serve nothing else.

Two daemon threads run beside the jobs, three with retention:

- *liveness*: every ``queue.ALIVE_INTERVAL`` s it sets ``queue.alive_key(<worker name>)`` with a
  short TTL, and ``queue.serves_key(<worker name>)`` to the models it serves (``run_worker
  --models``), which the API reads to refuse a model no live worker serves. A SIGKILLed
  worker's keys expire within ``queue.ALIVE_TTL`` s, which is how the reconciler tells a
  dead worker's task from a slow one (RQ's own abandoned-job detection waits minutes);
- *reconcile*: every ``QUICKBG_RECONCILE_INTERVAL`` s one worker (``queue.RECONCILE_LOCK`` elects
  it) runs ``removal.reconcile.reconcile`` to re-enqueue tasks that no live job holds, and
  deletes ``Idempotency-Key`` records past their 24 h window;
- *retention* (only when ``QUICKBG_RETENTION_DAYS`` is set): every ``RETENTION_CHECK`` s a worker
  tries to take ``queue.RETENTION_LOCK`` for a day; the one that gets it runs
  ``services.retention.retention_run``. So retention runs once a day whatever the number of
  workers, shortly after the first worker starts, with no scheduler process.

Database connections are checked around every job: without a fork the worker keeps its
connection, and a PostgreSQL restart would otherwise break every later job.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from rq.worker import SimpleWorker

from removal.queue import (
    ALIVE_INTERVAL,
    ALIVE_TTL,
    RECONCILE_LOCK,
    RETENTION_LOCK,
    RETENTION_PERIOD,
    alive_key,
    serves_key,
    webhook_slot_acquire,
    webhook_slot_release,
    webhooks_queue_name,
)
from removal.reconcile import reconcile
from removal.services.retention import idempotency_keys_purge, retention_run

logger = logging.getLogger(__name__)
# Seconds between a worker's attempts to take the daily retention lock.
RETENTION_CHECK = 600
# Seconds a worker without a webhook slot listens to the image queues before looking again.
SLOT_RECHECK = 5


def ensure_usable_connection() -> None:
    """Drop a database connection that the server closed (restart, failover, terminate)."""
    close_old_connections()
    if connection.connection is not None and not connection.is_usable():
        connection.close()


class QuickBGWorker(SimpleWorker):
    # Set by ``run_worker``: the models whose queues this worker takes, advertised under
    # ``queue.serves_key`` beside the liveness key (``queue.served_models`` reads them).
    served_models: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stop_threads = threading.Event()
        self._webhook_slot: str | None = None
        self._last_was_webhook = False

    def execute_job(self, job, queue):
        ensure_usable_connection()
        try:
            return super().execute_job(job, queue)
        finally:
            close_old_connections()
            self._last_was_webhook = queue.name == webhooks_queue_name()
            self._release_webhook_slot()

    # --- The webhook share (see the module docstring) ---------------------------------------

    def _shares_webhooks(self) -> bool:
        names = self.queue_names()
        return webhooks_queue_name() in names and len(names) > 1

    def _release_webhook_slot(self) -> None:
        if self._webhook_slot is not None:
            try:
                webhook_slot_release(self.connection, self._webhook_slot, self.name)
            except Exception as exc:  # noqa: BLE001 - it expires; its holder's liveness too
                logger.warning("could not release webhook slot: %s", exc)
            self._webhook_slot = None

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if not self._shares_webhooks():
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        webhooks = [q for q in self.queues if q.name == webhooks_queue_name()]
        images = [q for q in self.queues if q.name != webhooks_queue_name()]
        waited = 0
        while True:
            job_timeout = int(settings.QUICKBG_WEBHOOK_TIMEOUT) + 30
            self._webhook_slot = webhook_slot_acquire(
                self.connection, self.name, hold_seconds=(timeout or 0) + job_timeout + 30)
            if self._webhook_slot is None:
                self._ordered_queues = images
                wait = None if timeout is None else min(timeout, SLOT_RECHECK)
            else:  # the usual order (interactive, webhooks, batch); after a delivery, images first
                self._ordered_queues = (images + webhooks if self._last_was_webhook
                                        else self.queues[:])
                wait = timeout
            try:
                result = super().dequeue_job_and_maintain_ttl(
                    wait, max_idle_time=wait if self._webhook_slot is None else max_idle_time)
            finally:
                self._ordered_queues = self.queues[:]
            if result is not None and result[1].name != webhooks_queue_name():
                self._release_webhook_slot()
            if result is not None or wait is None or self._webhook_slot is not None:
                if result is None:
                    self._release_webhook_slot()
                return result
            waited += wait
            if max_idle_time is not None and waited >= max_idle_time:
                return None

    def work(self, *args, **kwargs):
        threads = [
            threading.Thread(target=self._alive_loop, name="quickbg-alive", daemon=True),
            threading.Thread(target=self._reconcile_loop, name="quickbg-reconcile", daemon=True),
        ]
        if settings.QUICKBG_RETENTION_DAYS:
            threads.append(threading.Thread(target=self._retention_loop,
                                            name="quickbg-retention", daemon=True))
        for thread in threads:
            thread.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stop_threads.set()
            try:
                self.connection.delete(self._alive_key(), serves_key(self.name))
            except Exception:  # noqa: BLE001 - Redis may be gone; the key expires anyway
                pass

    def _alive_key(self) -> str:
        return alive_key(self.name)

    def _alive_loop(self) -> None:
        while not self._stop_threads.is_set():
            try:
                with self.connection.pipeline() as pipe:
                    pipe.set(self._alive_key(), "1", ex=ALIVE_TTL)
                    pipe.set(serves_key(self.name), ",".join(self.served_models), ex=ALIVE_TTL)
                    pipe.execute()
            except Exception as exc:  # noqa: BLE001 - keep beating through a Redis outage
                logger.warning("liveness update failed: %s", exc)
            self._stop_threads.wait(ALIVE_INTERVAL)

    def _reconcile_loop(self) -> None:
        interval = settings.QUICKBG_RECONCILE_INTERVAL
        if interval <= 0:
            return
        while not self._stop_threads.wait(interval):
            try:
                lock = f"{RECONCILE_LOCK}:{settings.QUICKBG_QUEUE}"
                if self.connection.set(lock, self.name, nx=True, ex=interval):
                    ensure_usable_connection()
                    reconcile(grace_seconds=settings.QUICKBG_RECONCILE_GRACE)
                    idempotency_keys_purge()
            except Exception as exc:  # noqa: BLE001 - try again next round
                logger.warning("reconcile failed: %s", exc)
            finally:
                connection.close()  # this thread's own connection; reopened next round

    def _retention_loop(self) -> None:
        while not self._stop_threads.is_set():
            try:
                lock = f"{RETENTION_LOCK}:{settings.QUICKBG_QUEUE}"
                if self.connection.set(lock, self.name, nx=True, ex=RETENTION_PERIOD):
                    ensure_usable_connection()
                    retention_run()
            except Exception as exc:  # noqa: BLE001 - the lock expires; tried again tomorrow
                logger.warning("retention run failed: %s", exc)
            finally:
                connection.close()
            self._stop_threads.wait(RETENTION_CHECK)
