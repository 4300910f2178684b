"""The RQ worker QuickBG runs: a non-forking ``SimpleWorker`` that keeps the model warm.

Why not RQ's default forking ``Worker``: it forks a work horse per job, and an ONNX Runtime
session must not be created before a fork (its thread pools do not survive it), so every job
would load the 88 MB model again in a fresh horse. ``SimpleWorker`` runs jobs in its own process,
where ``removal.processing.get_segmenter`` creates the session once and reuses it. The cost:
nothing kills a stuck job from outside and a crash takes the worker down, so workers are
recycled with ``--max-jobs`` and the database stays the source of truth for recovery.

Database connections are checked around every job (``close_old_connections``): without a fork
the worker keeps its connection, and a PostgreSQL restart would otherwise break every later job.
"""

from __future__ import annotations

from django.db import close_old_connections
from rq.worker import SimpleWorker


class QuickBGWorker(SimpleWorker):
    def execute_job(self, job, queue):
        close_old_connections()
        try:
            return super().execute_job(job, queue)
        finally:
            close_old_connections()
