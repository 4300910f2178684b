"""``/metrics`` for Prometheus, read from the database and Redis at scrape time.

Off by default: the endpoint answers 404 until ``QUICKBG_METRICS_TOKEN`` is set, and then only
to ``Authorization: Bearer <token>``. A custom collector reads the shared stores on each scrape
instead of counting in process memory, because QuickBG runs as many web and worker processes and
none of them sees every task.

Exported families:

- ``quickbg_tasks{status}``: tasks in the database per status (gauge).
- ``quickbg_task_processing_seconds``: histogram of ``processing_time`` over every completed
  task (cumulative; it only shrinks when tasks are deleted).
- ``quickbg_task_failures_last_24h``: tasks that ended failed in the last 24 hours (gauge).
- ``quickbg_oldest_queued_task_age_seconds``: age of the oldest queued task, 0 when none.
- ``quickbg_queue_jobs{queue,state}``: RQ jobs waiting (``queued``), running (``started``),
  ``failed`` and ``scheduled``; ``quickbg_queue_workers{queue}``; ``quickbg_redis_up``.
- ``quickbg_model_present{model}``: 1 when the configured weights file is in place.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from removal import modelstore, stats


class QuickBGCollector:
    """A prometheus_client collector whose ``collect()`` queries the database and Redis."""

    def collect(self):
        tasks = GaugeMetricFamily(
            "quickbg_tasks", "Tasks in the database by status.", labels=["status"]
        )
        for status, count in stats.status_counts().items():
            tasks.add_metric([status], count)
        yield tasks

        batches = GaugeMetricFamily(
            "quickbg_batches", "Batches in the database by status (derived from their members).",
            labels=["status"],
        )
        for status, count in stats.batch_status_counts().items():
            batches.add_metric([status], count)
        yield batches

        histogram = stats.processing_histogram()
        family = HistogramMetricFamily(
            "quickbg_task_processing_seconds",
            "Processing time of completed tasks (from the database).",
        )
        family.add_metric(
            [],
            buckets=[(_le(b), n) for b, n in histogram.buckets] + [("+Inf", histogram.count)],
            sum_value=histogram.total,
        )
        yield family

        since = timezone.now() - timedelta(hours=24)
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
            # The interactive queue and the batch queue below it.
            states = [queue, stats.queue_state(settings.QUICKBG_BATCH_QUEUE)]
            jobs = GaugeMetricFamily(
                "quickbg_queue_jobs", "RQ jobs by state (queued = queue depth).",
                labels=["queue", "state"],
            )
            workers = GaugeMetricFamily(
                "quickbg_queue_workers", "RQ workers listening on the queue.", labels=["queue"]
            )
            for each in states:
                if not each.available:
                    continue
                for state in ("queued", "started", "failed", "scheduled"):
                    jobs.add_metric([each.name, state], getattr(each, state))
                workers.add_metric([each.name], each.workers)
            yield jobs
            yield workers

        present = GaugeMetricFamily(
            "quickbg_model_present", "1 when the configured model file is in place.",
            labels=["model"],
        )
        present.add_metric(
            [settings.QUICKBG_MODEL],
            1 if modelstore.is_present(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL) else 0,
        )
        yield present


def _le(bound: float) -> str:
    return repr(float(bound))


def metrics_token() -> str:
    return getattr(settings, "QUICKBG_METRICS_TOKEN", "") or ""


def _authorized(request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request):
    token = metrics_token()
    if not token:
        raise Http404("Metrics are disabled; set QUICKBG_METRICS_TOKEN to enable them")
    if not _authorized(request, token):
        response = HttpResponse("Missing or invalid bearer token\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuickBGCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
