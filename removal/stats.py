"""Read-only numbers about tasks and the queue, for the admin overview and ``/metrics``.

Everything is read from the database and Redis, never from process-local counters: the web
processes and the workers are many, and only the shared stores see all of them. Each function is
one or two indexed queries, so the overview page and a Prometheus scrape stay cheap with
ten million tasks: every query is bounded in time (the last 24 hours) and served by an index,
or reads the planner's statistics (``status_totals``); ``bench/scale.py`` prints their plans.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Substr, TruncHour
from django.utils import timezone
from rq import Worker

from removal import selectors
from removal.models import Batch, Task
from removal.queue import get_queue, task_queue_name

logger = logging.getLogger(__name__)

Status = Task.Status
# Upper bounds (seconds) of the processing-time histogram; ``+Inf`` is added by the exporter.
PROCESSING_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)


def status_counts(*, since: datetime | None = None) -> dict[str, int]:
    """Tasks per status (every status present, zero when none), created since ``since``."""
    qs = Task.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    counts = {value: 0 for value in Status.values}
    for row in qs.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


# Above this many tasks, ``status_totals`` estimates the finished statuses instead of counting.
ESTIMATE_ABOVE = 100_000


def status_totals() -> tuple[dict[str, int], bool]:
    """Tasks per status over the whole table, for ``/metrics``; ``(counts, estimated)``.

    Counting 10M rows per scrape is a full scan (seconds). Queued and processing are always
    counted exactly: few rows, read from the ``status`` index. On PostgreSQL with more than
    ``ESTIMATE_ABOVE`` rows the finished statuses (completed, failed, expired) come from the
    planner's statistics (``pg_class.reltuples`` × the status's frequency in ``pg_stats``,
    refreshed by autovacuum's ``ANALYZE``): a constant-time read, within a few percent.
    """
    stats = _status_statistics()
    if stats is None:
        return status_counts(), False
    rows, frequencies = stats
    counts = {value: round(rows * frequencies.get(value, 0.0)) for value in Status.values}
    live = (Task.objects.filter(status__in=[Status.QUEUED, Status.PROCESSING]).order_by()
            .values("status").annotate(n=Count("id")))
    counts.update({Status.QUEUED: 0, Status.PROCESSING: 0})
    counts.update({row["status"]: row["n"] for row in live})
    return counts, True


def _status_statistics() -> tuple[float, dict[str, float]] | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, s.most_common_vals::text::text[], s.most_common_freqs "
            "FROM pg_class c LEFT JOIN pg_stats s ON s.tablename = c.relname "
            "AND s.attname = 'status' AND s.schemaname = current_schema() "
            "WHERE c.relname = %s AND c.relkind = 'r'",
            [Task._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] < ESTIMATE_ABOVE or row[1] is None:
        return None
    return row[0], dict(zip(row[1], row[2], strict=True))


def batch_status_counts(*, since: datetime | None = None) -> dict[str, int]:
    """Batches per derived status (``selectors.BATCH_STATUS_RULES``), created since ``since``:
    one query, the batches' member counts grouped in a subquery and counted per status."""
    qs = Batch.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    annotated = selectors.batches_with_counts(qs.order_by())
    return annotated.aggregate(**{
        status: Count("pk", filter=selectors.batch_status_filter(status))
        for status in selectors.BATCH_STATUSES})


def hourly_status_counts(*, since: datetime) -> list[dict]:
    """``[{"hour": datetime, "queued": n, ...}]`` for every hour since ``since``, oldest first."""
    rows = (
        Task.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .order_by()
        .values("hour", "status")
        .annotate(n=Count("id"))
    )
    buckets: dict[datetime, dict] = {}
    hour = since.replace(minute=0, second=0, microsecond=0)
    now = timezone.now()
    while hour <= now:
        buckets[hour] = {"hour": hour, **{value: 0 for value in Status.values}}
        hour += timedelta(hours=1)
    for row in rows:
        bucket = buckets.setdefault(
            row["hour"], {"hour": row["hour"], **{value: 0 for value in Status.values}}
        )
        bucket[row["status"]] = row["n"]
    return [buckets[key] for key in sorted(buckets)]


def _percentiles_python(values: list[float], fractions: tuple[float, ...]) -> list[float | None]:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``)."""
    if not values:
        return [None for _ in fractions]
    values = sorted(values)
    out = []
    for fraction in fractions:
        position = fraction * (len(values) - 1)
        low, high = math.floor(position), math.ceil(position)
        out.append(values[low] + (values[high] - values[low]) * (position - low))
    return out


def processing_percentiles(
    *, since: datetime, fractions: tuple[float, ...] = (0.5, 0.95)
) -> list[float | None]:
    """Percentiles of ``processing_time`` over tasks completed since ``since``."""
    qs = Task.objects.filter(
        status=Status.COMPLETED, updated_at__gte=since, processing_time__isnull=False
    )
    if connection.vendor == "postgresql":
        sql, params = qs.order_by().values("processing_time").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY t.processing_time) "
                f"FROM ({sql}) AS t",
                [list(fractions), *params],
            )
            row = cursor.fetchone()[0]
        return list(row) if row else [None for _ in fractions]
    return _percentiles_python(list(qs.values_list("processing_time", flat=True)), fractions)


def top_failures(*, since: datetime, limit: int = 10) -> list[dict]:
    """The most common error messages of tasks that failed since ``since`` (first 200 chars)."""
    return list(
        Task.objects.filter(status=Status.FAILED, updated_at__gte=since)
        .annotate(message=Substr("error_message", 1, 200))
        .order_by()
        .values("message")
        .annotate(n=Count("id"), last=Max("updated_at"))
        .order_by("-n", "-last")[:limit]
    )


@dataclass
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count), without +Inf
    count: int
    total: float


def processing_histogram(*, since: datetime,
                         buckets: tuple[float, ...] = PROCESSING_BUCKETS) -> Histogram:
    """Processing-time histogram of the tasks completed since ``since``, in one query.

    Time-bounded so a scrape reads the last day's rows from the ``(status, updated_at)`` index,
    not every completed task ever.
    """
    completed = Q(status=Status.COMPLETED, processing_time__isnull=False, updated_at__gte=since)
    aggregates = {f"le_{i}": Count("id", filter=Q(processing_time__lte=b))
                  for i, b in enumerate(buckets)}
    row = Task.objects.filter(completed).aggregate(
        count=Count("id"), total=Sum("processing_time"), **aggregates
    )
    return Histogram(
        buckets=[(b, row[f"le_{i}"]) for i, b in enumerate(buckets)],
        count=row["count"],
        total=float(row["total"] or 0.0),
    )


def failed_since(*, since: datetime) -> int:
    return Task.objects.filter(status=Status.FAILED, updated_at__gte=since).count()


def oldest_queued_age(*, now: datetime | None = None) -> float:
    """Seconds since the oldest still-queued task was created (0 when none is queued)."""
    now = now or timezone.now()
    oldest = Task.objects.filter(status=Status.QUEUED).aggregate(oldest=Min("created_at"))
    return (now - oldest["oldest"]).total_seconds() if oldest["oldest"] else 0.0


@dataclass
class QueueState:
    name: str
    available: bool
    queued: int = 0
    started: int = 0
    failed: int = 0
    scheduled: int = 0
    workers: int = 0
    error: str = ""
    extra: dict = field(default_factory=dict)


def model_task_counts(*, since: datetime) -> dict[tuple[str, str], int]:
    """``{(model, status): n}``: every queued and processing task, and the tasks created since
    ``since`` (last changed) that completed or failed (one grouped query each, indexed)."""
    counts: dict[tuple[str, str], int] = {}
    in_flight = Task.objects.filter(status__in=[Status.QUEUED, Status.PROCESSING])
    finished = Task.objects.filter(status__in=[Status.COMPLETED, Status.FAILED],
                                   updated_at__gte=since)
    for qs in (in_flight, finished):
        for row in qs.order_by().values("model", "status").annotate(n=Count("id")):
            counts[(row["model"], row["status"])] = row["n"]
    return counts


def queue_state(name: str | None = None) -> QueueState:
    """Depth of an RQ queue (default: the default model's interactive one) and its registries;
    ``available=False`` when Redis is down."""
    name = name or task_queue_name()
    try:
        queue = get_queue(name)
        return QueueState(
            name=name,
            available=True,
            queued=queue.count,
            started=queue.started_job_registry.count,
            failed=queue.failed_job_registry.count,
            scheduled=queue.scheduled_job_registry.count,
            workers=Worker.count(queue=queue),
        )
    except Exception as exc:  # noqa: BLE001 - Redis down must not break the page or the scrape
        logger.warning("could not read RQ queue %s: %s", name, exc)
        return QueueState(name=name, available=False, error=type(exc).__name__)


def overview(*, hours: int = 24) -> dict:
    """Everything the staff overview page shows, for the last ``hours``."""
    since = timezone.now() - timedelta(hours=hours)
    median, p95 = processing_percentiles(since=since)
    counts = status_counts(since=since)
    return {
        "hours": hours,
        "since": since,
        "status_counts": counts,
        "total": sum(counts.values()),
        "hourly": hourly_status_counts(since=since),
        "median": median,
        "p95": p95,
        "queue": queue_state(),
        "batch_queue": queue_state(task_queue_name(batch=True)),
        "batch_counts": batch_status_counts(since=since),
        "oldest_queued_age": oldest_queued_age(),
        "failures": top_failures(since=since),
    }
