"""Reads shared by the API, the admin and the management commands, each written once.

- ``owner_match``: find a user's rows by user id, username or email (admin filters, ``--user``).
- ``task_foreground``, ``task_confidence``: the facts every task reports (API and admin).
- ``credit_cost``, ``credits_used``: remove.bg-style credits (the account endpoint, the monthly
  limit).
- ``unfinished_task_count``: what the per-user task cap counts (tasks outside batches);
  ``unfinished_batch_task_count``: what the per-user cap on batch members counts.
- ``batches_with_counts``: batches annotated with their members' counts per status and their
  progress (one aggregate query); ``BATCH_STATUS_RULES`` derive the status from those counts
  (``batch_status`` in Python, ``batch_status_expression`` in SQL).
- ``tasks_matching``: the task selection of ``reprocess`` (status, dates, user, model, ids).
- ``reprocess_plan`` / ``reprocess_counts``: the skip rules of reprocessing, applied in order as
  SQL, for the admin action and the command alike.
- ``expirable_uploads``: what retention expires; ``task_gone``: the worker's check after storing.

The numbers for the staff overview and ``/metrics`` are in ``removal.stats``; the task as
``GET /api/v1/tasks/{id}`` shows it (a webhook event's ``data``) is ``removal.representation``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from removal.models import Batch, Task, Upload
from removal.pipeline.options import PREVIEW_SIZES

Status = Task.Status
IN_FLIGHT = (Status.QUEUED, Status.PROCESSING)

# Why reprocessing skips a task (``reprocess_plan``); ``None`` means "queue a new task".
SKIP_IN_FLIGHT = "in flight"
SKIP_SAME_UPLOAD = "same upload"
SKIP_UPLOAD_BUSY = "upload busy"
SKIP_EXPIRED = "expired"
SKIP_DONE = "already reprocessed"


def owner_match(value: str, *, owner_path: str) -> Q:
    """Rows whose owner (reached by ``owner_path``, e.g. ``"upload__owner"``) has this user id,
    username or email (case-insensitive). Only ASCII digits that fit a bigint count as an id."""
    value = value.strip()
    match = Q(**{f"{owner_path}__username": value}) | Q(**{f"{owner_path}__email__iexact": value})
    if value.isascii() and value.isdigit() and len(value) < 19:
        match |= Q(**{f"{owner_path}_id": int(value)})
    return match


def user_ids_by_email(email: str) -> list[int]:
    """The ids of the users with this email (case-insensitive); the admin's email search."""
    return list(get_user_model().objects.filter(email__iexact=email.strip())
                .values_list("pk", flat=True))


def upload_ids_by_filename(term: str, *, limit: int) -> list:
    """Up to ``limit`` ids of uploads whose file name contains ``term`` (case-insensitive);
    the admin's file-name search.

    Unordered on purpose: PostgreSQL stops at ``limit`` matches of the trigram index (about
    170 ms for a precise name at 10M uploads, a few ms for a broad one), where "the newest
    matches" would have to sort every match (seconds for a term a million names share).
    """
    return list(Upload.objects.filter(original_filename__icontains=term).order_by()
                .values_list("pk", flat=True)[:limit])


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

# How a batch's status derives from its members' counts per task status (``n_<status>`` of
# ``batches_with_counts``), written once: the first rule that holds wins. The database reads it
# as one CASE (``batch_status_expression``), Python over counts (``batch_status``).
BATCH_STATUS_RULES: tuple[tuple[str, Q], ...] = (
    ("queued", Q(n_queued__gt=0, n_processing=0, n_completed=0, n_failed=0)),
    ("processing", Q(n_queued__gt=0) | Q(n_processing__gt=0)),
    ("completed", Q(n_failed=0)),
    ("partial", Q(n_completed__gt=0)),
    ("failed", Q()),
)
BATCH_STATUSES = tuple(status for status, _rule in BATCH_STATUS_RULES)


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
    return (qs.annotate(**counts, progress_sum=progress)
            .alias(derived_status=batch_status_expression()).order_by("-created_at", "-pk"))


def batch_counts(batch: Batch) -> dict[str, int]:
    """Member counts per task status (``batch`` annotated by ``batches_with_counts``)."""
    return {value: getattr(batch, f"n_{value}") for value in Status.values}


def batch_status_expression() -> Case:
    """The derived status as SQL, over ``batches_with_counts`` rows."""
    *rules, (last, _) = BATCH_STATUS_RULES
    return Case(*(When(rule, then=Value(status)) for status, rule in rules),
                default=Value(last), output_field=CharField())


def _holds(rule: Q, counts: dict[str, int]) -> bool:
    """``rule`` (``n_<status>`` equal to, or ``__gt``, a number) evaluated over ``counts``."""
    def one(child) -> bool:
        if isinstance(child, Q):
            return _holds(child, counts)
        (field, _, operator), value = child[0].partition("__"), child[1]
        count = counts[field.removeprefix("n_")]
        return count > value if operator == "gt" else count == value
    held = (all if rule.connector == Q.AND else any)(map(one, rule.children))
    return held != rule.negated


def batch_status(counts: dict[str, int]) -> str:
    """``queued`` until a member starts; ``processing`` while any is unfinished; then
    ``completed`` (none failed), ``failed`` (all failed) or ``partial`` (``BATCH_STATUS_RULES``
    over member counts per task status)."""
    return next(status for status, rule in BATCH_STATUS_RULES if _holds(rule, counts))


def batch_progress(batch: Batch) -> int:
    """0-100 over every member (``batch`` annotated by ``batches_with_counts``)."""
    members = sum(batch_counts(batch).values())
    return round(batch.progress_sum / members) if members else 0


def batch_status_filter(status: str) -> Q:
    """A ``Q`` over ``batches_with_counts`` rows selecting one derived status (admin filter)."""
    return Q(derived_status=status)


def batch_members(batch: Batch) -> QuerySet[Task]:
    """A batch's tasks in the order they were sent."""
    return Task.objects.filter(batch=batch).select_related("upload").order_by("created_at", "pk")


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


# What a month's credits count: tasks that completed (their images since deleted by retention
# too), and tasks still queued or processing, charged up front so that a burst of uploads cannot
# overshoot the limit. A failed task costs nothing.
CHARGED = (Status.COMPLETED, Status.EXPIRED, *IN_FLIGHT)


def credits_used(*, owner, since: datetime | None = None) -> float:
    """Credits counted for ``owner`` since ``since`` (default: the start of this month, UTC),
    over the tasks of every endpoint that are ``CHARGED``, in one query."""
    if since is None:
        since = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    counts = Task.objects.filter(
        upload__owner=owner, status__in=CHARGED, created_at__gte=since,
    ).aggregate(tasks=Count("pk"), previews=Count("pk", filter=Q(options__size__in=PREVIEW_SIZES)))
    return counts["previews"] * 0.25 + (counts["tasks"] - counts["previews"])


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


def task_gone(*, task_id) -> bool:
    """The task's row was deleted (its upload or account was deleted)."""
    return not Task.objects.filter(pk=task_id).exists()


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


def reprocess_plan(tasks: QuerySet[Task], *, newest_first: bool = False, chunk_size: int = 1000,
                   model: str | None = None) -> Iterator[tuple[Task, str | None]]:
    """For each selected task, oldest first (the command) or ``newest_first`` (the admin's
    changelist order), why reprocessing skips it, or ``None`` when a new task would be queued.

    The rules, in order (``planned`` writes them as SQL):

    1. a task still queued or processing is skipped (``SKIP_IN_FLIGHT``);
    2. so is a task whose images retention deleted (``SKIP_EXPIRED``; retention marks every
       task of an expired upload, and ``task_reprocess`` refuses an expired upload);
    3. a second selected task of an upload is skipped (``SKIP_SAME_UPLOAD``): a selected,
       finished task of the same upload comes before it in the walk;
    4. a task whose upload already has a task queued or processing is skipped
       (``SKIP_UPLOAD_BUSY``), so running the same reprocess twice queues nothing new;
    5. a task already reprocessed with the target model (``model``, default: the current
       default; a task whose ``reprocess_of`` is it) is skipped (``SKIP_DONE``), so an
       interrupted run, run again, resumes where it stopped even after the new tasks finished.

    Walks the selection in ``(created_at, id)`` chunks, each one query with the rules evaluated
    by PostgreSQL (``EXISTS`` probes on indexes), so memory stays flat at any size. Tasks created
    after the walk started (the new ones) are not part of it.
    """
    rows = (planned(tasks, newest_first=newest_first, model=model)
            .filter(created_at__lte=timezone.now()).select_related("upload__owner"))
    order = ("-created_at", "-id") if newest_first else ("created_at", "id")
    after = None
    while True:
        page = rows
        if after is not None:
            page = page.filter(_walked_past(after.created_at, after.pk, newest_first))
        batch = list(page.order_by(*order)[:chunk_size])
        if not batch:
            return
        for task in batch:
            yield task, task.skip
        after = batch[-1]


def reprocess_counts(tasks: QuerySet[Task], *, model: str | None = None,
                     ) -> dict[str | None, int]:
    """``reprocess_plan``'s outcome counted by PostgreSQL in one query: ``{skip: n}``.

    The same rules as ``planned``, with "same upload" as a window (``row_number()`` per upload
    among the finished selected tasks, oldest first) instead of a probe per task: one sort
    instead of a million index look-ups, so a dry run over 1M tasks takes seconds.
    """
    selected = tasks.order_by().annotate(
        p_flying=ExpressionWrapper(Q(status__in=IN_FLIGHT), output_field=BooleanField()),
        p_expired=ExpressionWrapper(Q(status=Status.EXPIRED), output_field=BooleanField()),
        p_busy=Exists(_busy()),
        p_done=Exists(_reprocessed(model)),
    ).values("upload_id", "created_at", "id", "p_flying", "p_expired", "p_busy", "p_done")
    sql, params = selected.query.sql_with_params()
    rules = [SKIP_IN_FLIGHT, SKIP_EXPIRED, SKIP_SAME_UPLOAD, SKIP_UPLOAD_BUSY, SKIP_DONE]
    # MATERIALIZED: the window sorts the selected rows in memory; without it PostgreSQL may walk
    # the upload_id index instead, a random heap read per task (10 s at 1M).
    query = (
        f"WITH selected AS MATERIALIZED ({sql}) "
        "SELECT CASE WHEN p_flying THEN %s WHEN p_expired THEN %s WHEN p_rank > 1 THEN %s "
        "WHEN p_busy THEN %s WHEN p_done THEN %s END, COUNT(*) FROM ("
        "  SELECT *, row_number() OVER (PARTITION BY upload_id, p_flying "
        "                               ORDER BY created_at, id) AS p_rank FROM selected"
        ") AS plan GROUP BY 1"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Room to sort a million rows in memory (this query only, this transaction only).
            cursor.execute("SET LOCAL work_mem = '128MB'")
            cursor.execute("SET LOCAL jit = off")  # compiling costs more than it saves here
        cursor.execute(query, [*params, *rules])
        return dict(cursor.fetchall())


def _busy() -> QuerySet[Task]:
    return Task.objects.filter(upload_id=OuterRef("upload_id"), status__in=IN_FLIGHT)


def _reprocessed(model: str | None = None) -> QuerySet[Task]:
    return Task.objects.filter(reprocess_of=OuterRef("pk"), reprocess_of__isnull=False,
                               model=model or settings.QUICKBG_MODEL)


def _walked_past(created_at, pk, newest_first: bool) -> Q:
    """Rows after ``(created_at, pk)`` in the walk's order. The leading ``created_at`` bound is
    the index condition that starts each chunk at the cursor (an ``OR`` alone would make every
    chunk scan the index from the start)."""
    if newest_first:
        return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(id__lt=pk))
    return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(id__gt=pk))


def planned(tasks: QuerySet[Task], *, newest_first: bool = False,
            model: str | None = None) -> QuerySet[Task]:
    """``tasks`` annotated with ``skip``: ``reprocess_plan``'s rules as one SQL expression."""
    before = (Q(created_at__gt=OuterRef("created_at"))
              | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))) if newest_first \
        else (Q(created_at__lt=OuterRef("created_at"))
              | Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id")))
    finished_earlier = tasks.order_by().filter(
        before, upload_id=OuterRef("upload_id")
    ).exclude(status__in=IN_FLIGHT)
    return tasks.annotate(skip=Case(
        When(status__in=IN_FLIGHT, then=Value(SKIP_IN_FLIGHT)),
        When(status=Status.EXPIRED, then=Value(SKIP_EXPIRED)),
        When(Exists(finished_earlier), then=Value(SKIP_SAME_UPLOAD)),
        When(Exists(_busy()), then=Value(SKIP_UPLOAD_BUSY)),
        When(Exists(_reprocessed(model)), then=Value(SKIP_DONE)),
        default=Value(None), output_field=CharField(null=True),
    ))


def expirable_uploads(*, cutoff, user: str | None = None) -> QuerySet[Upload]:
    """Uploads retention would expire: created before ``cutoff``, not expired yet, and with no
    task queued or processing (those are left for a later run)."""
    qs = Upload.objects.filter(created_at__lt=cutoff, expired_at=None).exclude(
        Exists(Task.objects.filter(upload_id=OuterRef("pk"), status__in=IN_FLIGHT))
    )
    if user:
        qs = qs.filter(owner_match(user, owner_path="owner"))
    return qs
