"""Reads shared by the API, the admin and the management commands, each written once.

- ``owner_match``: find a user's rows by user id, username or email (admin filters, ``--user``).
- ``unfinished_task_count``: what the per-user task cap counts.
- ``tasks_matching``: the task selection of ``reprocess`` (status, dates, user, model, ids).
- ``reprocess_plan``: the skip rules of reprocessing, applied in order, for the admin action and
  the command alike.

The numbers for the staff overview and ``/metrics`` are in ``removal.stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Q, QuerySet

from removal.models import Task

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
    return Task.objects.filter(upload__owner=owner, status__in=IN_FLIGHT).count()


def reusable_result(*, owner, sha256: str, model: str, options: dict,
                    model_sha256: str) -> Task | None:
    """The newest completed task of this owner over the same image bytes, with the same
    effective options, model and weights (``metrics.model_sha256``), whose result can be reused.

    Never another user's: how fast a task completes would tell one user what another uploaded.
    """
    return (
        Task.objects.filter(
            upload__owner=owner, upload__sha256=sha256, status=Status.COMPLETED, model=model,
            options=options, metrics__model_sha256=model_sha256,
        )
        .exclude(result_key="")
        .order_by("-finished_at")
        .first()
    )


def upload_has_task_in_flight(*, upload_id) -> bool:
    return Task.objects.filter(upload_id=upload_id, status__in=IN_FLIGHT).exists()


def tasks_matching(*, statuses: Iterable[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None, user: str | None = None,
                   model: str | None = None, ids: Iterable | None = None) -> QuerySet[Task]:
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
