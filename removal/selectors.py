"""Reads shared by the API, the admin and the management commands, each written once.

- ``owner_match``: find a user's rows by user id, username or email (admin filters, ``--user``).
- ``unfinished_task_count``: what the per-user task cap counts.
- ``task_foreground``, ``task_confidence``: the facts every task reports (API and admin).
- ``credit_cost``, ``credits_used``: remove.bg-style credits (the account endpoint, the monthly
  limit).
- ``tasks_matching``: the task selection of ``reprocess`` (status, dates, user, model, ids).
- ``reprocess_plan``: the skip rules of reprocessing, applied in order, for the admin action and
  the command alike.

The numbers for the staff overview and ``/metrics`` are in ``removal.stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from removal.models import Task
from removal.pipeline.options import PREVIEW_SIZES

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


def task_foreground(task: Task) -> dict | None:
    """Where the subject is in the task's result, ``{top, left, width, height}`` in result
    pixels; ``None`` until it completed. Tasks from before ``foreground`` was recorded derive it
    from the pipeline's ``bbox`` and ``crop_box`` (no resize existed then)."""
    metrics = task.metrics or {}
    if task.status != Status.COMPLETED:
        return None
    if "foreground" in metrics:
        return metrics["foreground"]
    if "bbox" in metrics and "crop_box" in metrics:
        (x0, y0, x1, y1), (cx, cy, _, _) = metrics["bbox"], metrics["crop_box"]
        return {"top": y0 - cy, "left": x0 - cx, "width": x1 - x0, "height": y1 - y0}
    return None


def task_confidence(task: Task) -> float | None:
    """Share of decisive mask pixels (alpha < 0.05 or > 0.95) of a completed task."""
    if task.status != Status.COMPLETED:
        return None
    return (task.metrics or {}).get("confidence")


def credit_cost(options: dict | None) -> float:
    """What a task costs, as remove.bg charges: 0.25 for preview sizes, else 1."""
    return 0.25 if (options or {}).get("size") in PREVIEW_SIZES else 1.0


def credits_used(*, owner, since: datetime | None = None) -> float:
    """Credits counted for ``owner`` since ``since`` (default: the start of this month, UTC):
    every task that completed, whichever endpoint made it."""
    if since is None:
        since = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    done = Task.objects.filter(upload__owner=owner, status=Status.COMPLETED, created_at__gte=since)
    previews = done.filter(options__size__in=PREVIEW_SIZES).count()
    return previews * 0.25 + (done.count() - previews)


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
