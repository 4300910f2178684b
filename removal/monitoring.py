"""``GET /api/v1/health`` and ``/metrics`` for Prometheus, read from the stores at request time.

Health answers anyone with the seed's contract and nothing more: ``{status, service, checks:
{api, database, redis, s3, storage}}``, each check ``ok`` or ``error``, 200 or 503. ``s3`` is the
seed's name for the storage check and ``storage`` today's; both carry the same result, a real
write, read back and delete of a small object through the configured storage (S3 or the local
folder). Staff signed in to the admin (session) and holders of ``QUICKBG_METRICS_TOKEN``
(``Authorization: Bearer``) also get ``details``: each failed check's error, the model, and the
queue (depth, running, failed, workers). Health is throttled per client address
(``QUICKBG_HEALTH_RATE``, generous: load balancers poll it). ``?skip=storage`` (a comma list of
check names) leaves checks out, reported as ``skipped``: the cheap form a readiness probe polls
every few seconds without writing to storage each time (deploy/kubernetes/web.yaml).

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
"""

from __future__ import annotations

import hmac
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from removal import modelstore, stats
from removal.api.throttling import SettingsRate
from removal.queue import get_queue, served_models, task_queue_name

logger = logging.getLogger(__name__)


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


# --- Health ---------------------------------------------------------------------------------------


class HealthRateThrottle(SettingsRate, SimpleRateThrottle):
    """``QUICKBG_HEALTH_RATE`` health requests per client address (``NUM_PROXIES`` applies)."""

    scope = "health"
    rate_setting = "QUICKBG_HEALTH_RATE"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def _database_probe() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis_probe() -> None:
    get_queue().connection.ping()


def _storage_probe() -> None:
    """Write a small object, read it back, delete it: reachable, writable and readable."""
    payload = f"quickbg health probe {uuid.uuid4().hex}".encode()
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(payload))
    try:
        with default_storage.open(name, "rb") as fh:
            if fh.read() != payload:
                raise OSError("storage returned other bytes than were written")
    finally:
        default_storage.delete(name)


PROBES = {"database": _database_probe, "redis": _redis_probe, "storage": _storage_probe}


def _sees_details(request) -> bool:
    """Staff with an admin session, or the holder of the metrics token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = metrics_token()
    return bool(token) and _authorized(request, token)


_CHECK = serializers.ChoiceField(choices=["ok", "error", "skipped"])
HealthSerializer = inline_serializer(
    "Health",
    fields={
        "status": serializers.ChoiceField(choices=["healthy", "unhealthy"]),
        "service": serializers.CharField(),
        "checks": inline_serializer(
            "HealthChecks",
            fields={name: _CHECK for name in ("api", "database", "redis", "s3", "storage")},
        ),
    },
)


def _skipped_checks(request) -> set[str]:
    """The checks ``?skip=`` names (comma-separated); a name that is no check is an error."""
    names = {name.strip() for name in request.query_params.get("skip", "").split(",")}
    names.discard("")
    unknown = sorted(names - set(PROBES))
    if unknown:
        raise ValueError(f"Unknown health check to skip: {', '.join(unknown)} "
                         f"(the checks are {', '.join(PROBES)})")
    return names


@extend_schema(
    auth=[], responses={200: HealthSerializer, 503: HealthSerializer},
    summary="Service health: 200 when the database, Redis and storage answer, else 503",
    parameters=[OpenApiParameter(
        "skip", str, description="Checks to leave out, comma-separated (database, redis, "
        "storage), reported as skipped. `skip=storage` is the cheap form for readiness probes: "
        "no object is written.")],
)
@api_view(["GET"])
@authentication_classes([SessionAuthentication])
@permission_classes([AllowAny])
@throttle_classes([HealthRateThrottle])
def health_view(request):
    try:
        skipped = _skipped_checks(request)
    except ValueError as exc:
        return Response({"detail": str(exc)}, status=400)
    checks = {"api": "ok"}
    errors = {}
    for name, probe in PROBES.items():
        if name in skipped:
            checks[name] = "skipped"
            continue
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is a failed check
            logger.warning("health check %s failed: %s", name, exc)
            checks[name] = "error"
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
    checks["s3"] = checks["storage"]  # the seed's name for the same check
    healthy = all(value in ("ok", "skipped") for value in checks.values())
    body = {"status": "healthy" if healthy else "unhealthy", "service": "quickbg",
            "checks": checks}
    if _sees_details(request):
        body["details"] = _details(errors)
    response = Response(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


def _details(errors: dict[str, str]) -> dict:
    queue = stats.queue_state()  # never raises
    return {
        "errors": errors,
        # Informational: a web-only process has no weights, and a deep queue is not an outage.
        "model": {
            "name": settings.QUICKBG_MODEL,
            "present": modelstore.is_present(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL),
            "path": str(modelstore.model_path(settings.QUICKBG_MODELS_DIR,
                                              settings.QUICKBG_MODEL)),
        },
        "queue": {"name": queue.name, "depth": queue.queued, "running": queue.started,
                  "failed": queue.failed, "workers": queue.workers} if queue.available else None,
        "storage": "s3" if settings.AWS_STORAGE_BUCKET_NAME else "local",
    }
