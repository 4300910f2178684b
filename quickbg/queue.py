"""The RQ queue class QuickBG uses: django-rq's, tolerant of Redis being down at enqueue time.

django-rq defers ``enqueue`` until the transaction commits; if Redis is unreachable then, the
task row is already committed as ``queued``. Raising would turn an accepted upload into a 500
with an orphaned row, so the error is logged and the reconciler (``reconcile_tasks``, also run
by every worker) enqueues the task once Redis is back.
"""

from __future__ import annotations

import logging

import redis.exceptions
from django_rq.queues import DjangoRQ

logger = logging.getLogger(__name__)


class ResilientQueue(DjangoRQ):
    def original_enqueue_call(self, *args, **kwargs):
        try:
            return super().original_enqueue_call(*args, **kwargs)
        except redis.exceptions.RedisError as exc:  # down, read-only after failover, OOM...
            logger.error(
                "Redis unavailable, job %s left for the reconciler: %s", kwargs.get("job_id"), exc
            )
            return None
