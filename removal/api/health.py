"""``GET /api/v1/health``, and the bearer-token gate of ``/metrics`` (``removal.metrics``).

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

The storage probe writes, reads and deletes an object, so it runs at most once per
``STORAGE_PROBE_SECONDS`` in a process: polls in between repeat its last answer, a failure
included, and the next poll after that probes again.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection
from django.dispatch import receiver
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
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

from removal import metrics, modelstore, stats, storage
from removal.api.throttling import HealthRateThrottle
from removal.queue import get_queue

logger = logging.getLogger(__name__)

# Seconds a storage probe's answer (ok or the error) is reused by later polls in this process.
STORAGE_PROBE_SECONDS = 5.0


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
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


# --- Health ---------------------------------------------------------------------------------------


def _database_probe() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis_probe() -> None:
    get_queue().connection.ping()


class CachedProbe:
    """Run ``probe`` at most once per ``seconds``; calls in between repeat its answer (return,
    or raise the same error). ``clock`` is ``time.monotonic``; tests move it."""

    def __init__(self, probe, *, seconds: float):
        self.probe, self.seconds, self.clock = probe, seconds, time.monotonic
        self._lock = threading.Lock()
        self.forget()

    def forget(self) -> None:
        self._until, self._error = float("-inf"), None

    def __call__(self) -> None:
        with self._lock:  # concurrent polls wait for the one probe rather than each running it
            if self.clock() >= self._until:
                try:
                    self.probe()
                    self._error = None
                except Exception as exc:  # noqa: BLE001 - reported by the caller, like a fresh one
                    self._error = exc
                self._until = self.clock() + self.seconds
            if self._error is not None:
                raise self._error


# Looked up at each call, so the probe is always the storage module's current one.
_storage_probe = CachedProbe(lambda: storage.probe(), seconds=STORAGE_PROBE_SECONDS)


@receiver(setting_changed)
def _storage_changed(*, setting, **kwargs) -> None:
    """Another storage (tests swap ``STORAGES``) is another answer: probe it afresh."""
    if setting in ("STORAGES", "AWS_STORAGE_BUCKET_NAME"):
        _storage_probe.forget()


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
