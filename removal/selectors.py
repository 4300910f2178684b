"""Reads shared by the API, the admin and the management commands, each written once.

- ``owner_match``: find a user's rows by user id, username or email (admin filters, ``--user``).
- ``unfinished_task_count``: what the per-user task cap counts (tasks outside batches);
  ``unfinished_batch_task_count``: what the per-user cap on batch members counts.
- ``batches_with_counts``: batches annotated with their members' counts per status and their
  progress (one aggregate query); ``batch_status`` derives the status from those counts.
- ``tasks_matching``: the task selection of ``reprocess`` (status, dates, user, model, ids).
- ``reprocess_plan``: the skip rules of reprocessing, applied in order, for the admin action and
  the command alike.

The numbers for the staff overview and ``/metrics`` are in ``removal.stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from removal.models import Batch, Task

Status = Task.Status
IN_FLIGHT = (Status.QUEUED, Status.PROCESSING)

# Why reprocessing skips a task (``reprocess_plan``); ``None`` means "queue a new task".
SKIP_IN_FLIGHT = "in flight"
SKIP_SAME_UPLOAD = "same upload"
SKIP_UPLOAD_BUSY = "upload busy"


def owner_match(value: str, *, owner_path: str) -> Q:
    """Rows whose owner (reached by ``owner_path``, e.g. ``"upload__owner"``) has this user id,
    username or email (case-insensitive). Only ASCII digits that fit a bigint count as an id."""
    value = value.strip()
    match = Q(**{f"{owner_path}__username": value}) | Q(**{f"{owner_path}__email__iexact": value})
    if value.isascii() and value.isdigit() and len(value) < 19:
        match |= Q(**{f"{owner_path}_id": int(value)})
    return match


def unfinished_task_count(*, owner) -> int:
    """Unfinished single tasks. Batch members have their own cap
    (``QUICKBG_MAX_QUEUED_BATCH_TASKS``) and never block single uploads."""
    return Task.objects.filter(
        upload__owner=owner, status__in=IN_FLIGHT, batch__isnull=True
    ).count()


def unfinished_batch_task_count(*, owner) -> int:
    return Task.objects.filter(
        upload__owner=owner, status__in=IN_FLIGHT, batch__isnull=False
    ).count()


# --- Batches -----------------------------------------------------------------------------------

BATCH_QUEUED = "queued"
BATCH_PROCESSING = "processing"
BATCH_COMPLETED = "completed"
BATCH_PARTIAL = "partial"
BATCH_FAILED = "failed"
BATCH_STATUSES = (BATCH_QUEUED, BATCH_PROCESSING, BATCH_COMPLETED, BATCH_PARTIAL, BATCH_FAILED)


def batches_with_counts(queryset: QuerySet[Batch] | None = None) -> QuerySet[Batch]:
    """Batches annotated with ``n_<status>`` member counts and ``progress_sum`` (a finished
    member counts 100), computed by the database in the same query as the batches."""
    qs = Batch.objects.all() if queryset is None else queryset
    counts = {f"n_{value}": Count("tasks", filter=Q(tasks__status=value))
              for value in Status.values}
    finished = (Status.COMPLETED, Status.FAILED)
    progress = Coalesce(Sum(Case(
        When(tasks__status__in=finished, then=Value(100)), default="tasks__progress",
        output_field=IntegerField(),
    )), 0)
    # Newest first, explicitly: Django ignores Meta.ordering in aggregate (GROUP BY) queries.
    return qs.annotate(**counts, progress_sum=progress).order_by("-created_at", "-pk")


def batch_counts(batch: Batch) -> dict[str, int]:
    """Member counts per task status (``batch`` annotated by ``batches_with_counts``)."""
    return {value: getattr(batch, f"n_{value}") for value in Status.values}


def batch_status(counts: dict[str, int]) -> str:
    """``queued`` until a member starts; ``processing`` while any is unfinished; then
    ``completed`` (none failed), ``failed`` (all failed) or ``partial``."""
    unfinished = counts[Status.QUEUED] + counts[Status.PROCESSING]
    finished = counts[Status.COMPLETED] + counts[Status.FAILED]
    if unfinished:
        return BATCH_QUEUED if not counts[Status.PROCESSING] and not finished else BATCH_PROCESSING
    if not counts[Status.FAILED]:
        return BATCH_COMPLETED
    return BATCH_FAILED if not counts[Status.COMPLETED] else BATCH_PARTIAL


def batch_progress(batch: Batch) -> int:
    """0-100 over every member (``batch`` annotated by ``batches_with_counts``)."""
    members = sum(batch_counts(batch).values())
    return round(batch.progress_sum / members) if members else 0


def batch_status_filter(status: str) -> Q:
    """A ``Q`` over ``batches_with_counts`` rows selecting one derived status (admin filter)."""
    unfinished = Q(n_queued__gt=0) | Q(n_processing__gt=0)
    done = Q(n_queued=0, n_processing=0)
    return {
        BATCH_QUEUED: Q(n_queued__gt=0, n_processing=0, n_completed=0, n_failed=0),
        BATCH_PROCESSING: unfinished & (Q(n_processing__gt=0) | Q(n_completed__gt=0)
                                        | Q(n_failed__gt=0)),
        BATCH_COMPLETED: done & Q(n_failed=0),
        BATCH_FAILED: done & Q(n_completed=0, n_failed__gt=0),
        BATCH_PARTIAL: done & Q(n_completed__gt=0, n_failed__gt=0),
    }[status]


def batch_members(batch: Batch) -> QuerySet[Task]:
    """A batch's tasks in the order they were sent."""
    return Task.objects.filter(batch=batch).select_related("upload").order_by("created_at", "pk")


def upload_has_task_in_flight(*, upload_id) -> bool:
    return Task.objects.filter(upload_id=upload_id, status__in=IN_FLIGHT).exists()


def tasks_matching(*, statuses: Iterable[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None, user: str | None = None,
                   model: str | None = None, ids: Iterable | None = None,
                   batch=None) -> QuerySet[Task]:
    """Tasks matching every given criterion, oldest first (``until`` is exclusive)."""
    qs = Task.objects.all()
    if statuses:
        qs = qs.filter(status__in=list(statuses))
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if user:
        qs = qs.filter(owner_match(user, owner_path="upload__owner"))
    if model:
        qs = qs.filter(model=model)
    if ids:
        qs = qs.filter(pk__in=list(ids))
    if batch:
        qs = qs.filter(batch_id=batch)
    return qs.order_by("created_at", "pk")


def reprocess_plan(tasks: Iterable[Task]) -> Iterator[tuple[Task, str | None]]:
    """For each task, why reprocessing skips it, or ``None`` when a new task would be queued.

    The rules, in order: a task still queued or processing is skipped; so is a second task of an
    upload already taken in this run, and a task whose upload already has a task queued or
    processing (so running the same reprocess twice queues nothing new).
    """
    seen_uploads: set = set()
    for task in tasks:
        if task.status in IN_FLIGHT:
            yield task, SKIP_IN_FLIGHT
            continue
        if task.upload_id in seen_uploads:
            yield task, SKIP_SAME_UPLOAD
            continue
        seen_uploads.add(task.upload_id)
        if upload_has_task_in_flight(upload_id=task.upload_id):
            yield task, SKIP_UPLOAD_BUSY
            continue
        yield task, None
