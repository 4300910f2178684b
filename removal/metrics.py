"""What ``/metrics`` exports for Prometheus, read from the shared stores at scrape time.

Off by default: the endpoint answers 404 until ``QUICKBG_METRICS_TOKEN`` is set, and then only
to ``Authorization: Bearer <token>``. A custom collector reads the shared stores on each scrape
instead of counting in process memory, because QuickBG runs as many web and worker processes and
none of them sees every task.

Exported families:

- ``quickbg_tasks{status}``: tasks in the database per status (gauge). Queued and processing
  are exact; above 100 000 tasks the finished statuses are PostgreSQL's statistics estimate
  (``stats.status_totals``), and ``quickbg_tasks_estimated`` is 1.
- ``quickbg_task_processing_seconds``: histogram of ``processing_time`` over the tasks completed
  in the last 24 hours (a sliding window: read it with ``histogram_quantile`` directly, not
  ``rate()``). A scrape never reads every completed task.
- ``quickbg_task_failures_last_24h``: tasks that ended failed in the last 24 hours (gauge).
- ``quickbg_oldest_queued_task_age_seconds``: age of the oldest queued task, 0 when none.
- ``quickbg_queue_jobs{queue,model,state}``: RQ jobs waiting (``queued``), running
  (``started``), ``failed`` and ``scheduled``, for every model's interactive and batch queue;
  ``quickbg_queue_workers{queue,model}``; ``quickbg_redis_up``.
- ``quickbg_model_tasks{model,status}``: queued and processing tasks per model, and those of the
  last 24 hours that completed or failed; ``quickbg_model_workers{model}``: live workers
  serving it; ``quickbg_model_present{model}``: 1 when its file is in place.

The endpoint itself (its bearer token) is ``removal.api.health.metrics_view``.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from removal import modelstore, stats
from removal.queue import served_models, task_queue_name

CONTENT_TYPE = CONTENT_TYPE_LATEST


class QuickBGCollector:
    """A prometheus_client collector whose ``collect()`` queries the database and Redis."""

    def collect(self):
        tasks = GaugeMetricFamily(
            "quickbg_tasks", "Tasks in the database by status.", labels=["status"]
        )
        counts, estimated = stats.status_totals()
        for status, count in counts.items():
            tasks.add_metric([status], count)
        yield tasks
        yield GaugeMetricFamily(
            "quickbg_tasks_estimated",
            "1 when the finished statuses of quickbg_tasks are planner estimates.",
            value=1 if estimated else 0,
        )

        # Time-bounded like the histogram: counting every batch's members would scan the tasks.
        since = timezone.now() - timedelta(hours=24)
        batches = GaugeMetricFamily(
            "quickbg_batches", "Batches created in the last 24 hours by status (derived from "
            "their members).", labels=["status"],
        )
        for status, count in stats.batch_status_counts(since=since).items():
            batches.add_metric([status], count)
        yield batches

        histogram = stats.processing_histogram(since=since)
        family = HistogramMetricFamily(
            "quickbg_task_processing_seconds",
            "Processing time of the tasks completed in the last 24 hours.",
        )
        family.add_metric(
            [],
            buckets=[(_le(b), n) for b, n in histogram.buckets] + [("+Inf", histogram.count)],
            sum_value=histogram.total,
        )
        yield family

        yield GaugeMetricFamily(
            "quickbg_task_failures_last_24h", "Tasks that ended failed in the last 24 hours.",
            value=stats.failed_since(since=since),
        )
        yield GaugeMetricFamily(
            "quickbg_oldest_queued_task_age_seconds",
            "Seconds since the oldest still-queued task was created (0 when none).",
            value=stats.oldest_queued_age(),
        )

        queue = stats.queue_state()
        yield GaugeMetricFamily(
            "quickbg_redis_up", "1 when the RQ queue in Redis could be read.",
            value=1 if queue.available else 0,
        )
        if queue.available:
            # Every model's interactive queue and the batch queue below it.
            jobs = GaugeMetricFamily(
                "quickbg_queue_jobs", "RQ jobs by state (queued = queue depth).",
                labels=["queue", "model", "state"],
            )
            workers = GaugeMetricFamily(
                "quickbg_queue_workers", "RQ workers listening on the queue.",
                labels=["queue", "model"],
            )
            for model in sorted(modelstore.MODELS):
                for batch in (False, True):
                    each = stats.queue_state(task_queue_name(model, batch=batch))
                    if not each.available:
                        continue
                    for state in ("queued", "started", "failed", "scheduled"):
                        jobs.add_metric([each.name, model, state], getattr(each, state))
                    workers.add_metric([each.name, model], each.workers)
            yield jobs
            yield workers
            yield from self._served()

        yield from self._models(since)

    def _served(self):
        served = GaugeMetricFamily(
            "quickbg_model_workers", "Live workers serving the model (run_worker --models).",
            labels=["model"],
        )
        try:
            counts = served_models()
        except Exception:  # noqa: BLE001 - Redis went away mid-scrape
            return
        for model in sorted(modelstore.MODELS):
            served.add_metric([model], counts.get(model, 0))
        yield served

    def _models(self, since):
        tasks = GaugeMetricFamily(
            "quickbg_model_tasks", "Tasks by model and status: every queued and processing "
            "one, and those that completed or failed in the last 24 hours.",
            labels=["model", "status"],
        )
        for (model, status), count in sorted(stats.model_task_counts(since=since).items()):
            tasks.add_metric([model, status], count)
        yield tasks
        present = GaugeMetricFamily(
            "quickbg_model_present", "1 when the model's file is in this process's models "
            "folder.", labels=["model"],
        )
        for model in sorted(modelstore.MODELS):
            present.add_metric(
                [model], 1 if modelstore.is_present(settings.QUICKBG_MODELS_DIR, model) else 0)
        yield present


def _le(bound: float) -> str:
    return repr(float(bound))


def exposition() -> bytes:
    """One scrape: every family in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuickBGCollector())
    return generate_latest(registry)
