"""Staff views of uploads and tasks: fast changelists, thumbnails, metrics, retry and reprocess.

Tasks and uploads are read-only here: every change goes through ``removal.services`` (the two
actions below), never through a model form. The changelists stay fast with 100 000+ tasks:
joins instead of per-row queries (``list_select_related``), no second full ``COUNT``
(``show_full_result_count = False``), an estimated count for the unfiltered list, filters that
need no query to render, and indexes for the filters (migration ``0003_admin_indexes``).
"""

from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from removal import admin_views, modelstore, selectors, storage
from removal.errors import QuickBGError
from removal.models import Batch, Task, Upload, WebhookDelivery
from removal.pipeline.validate import SUPPORTED_FORMATS
from removal.services import batches, tasks, webhooks

Status = Task.Status

# The app list is on the admin's home page; without the navigation sidebar the changelists get
# its ~300 px, so the task list with its filters is readable at 1280 px.
admin.site.enable_nav_sidebar = False


class EstimatedCountPaginator(Paginator):
    """Counts that stay cheap at 10M rows (the admin shows a count on every changelist).

    - Unfiltered: PostgreSQL's row estimate (``pg_class.reltuples``) instead of ``COUNT(*)``.
    - Filtered or searched: counted exactly up to ``EXACT_UP_TO`` rows (a ``LIMIT``-ed count);
      past that, the planner's estimate for the filtered query (``EXPLAIN``), so a search that
      matches a million rows does not count them.
    A table PostgreSQL has not analysed yet, and other databases, are counted exactly.
    """

    EXACT_UP_TO = 1_000

    @cached_property
    def count(self):
        query = getattr(self.object_list, "query", None)
        if connection.vendor != "postgresql" or query is None:
            return super().count
        if not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] >= 10_000:
                return row[0]
            return super().count
        capped = self.object_list.order_by().values("pk")[: self.EXACT_UP_TO + 1].count()
        if capped <= self.EXACT_UP_TO:
            return capped
        sql, params = self.object_list.order_by().query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return max(capped, int(plan[0]["Plan"]["Plan Rows"]))


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(modelstore.MODELS)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


class FormatFilter(admin.SimpleListFilter):
    """The supported formats, listed without a ``SELECT DISTINCT`` over every upload."""

    title = "format"
    parameter_name = "format"

    def lookups(self, request, model_admin):
        return [(name, name) for name in SUPPORTED_FORMATS]

    def queryset(self, request, queryset):
        return queryset.filter(format=self.value()) if self.value() else queryset


class OwnerFilter(admin.SimpleListFilter):
    """A text box (user id, username or email) instead of a list of every user."""

    title = "owner"
    parameter_name = "owner"
    template = "admin/removal/input_filter.html"
    owner_path = "upload__owner"

    def lookups(self, request, model_admin):
        return [("", "")]  # Django only shows a filter that has lookups; the template ignores it.

    def choices(self, changelist):
        # The template needs the other query parameters to keep them in the form.
        yield {
            "value": self.value() or "",
            "hidden": [
                (k, v) for k, values in changelist.filter_params.items()
                if k != self.parameter_name for v in values
            ],
        }

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        return queryset.filter(selectors.owner_match(value, owner_path=self.owner_path))


class UploadOwnerFilter(OwnerFilter):
    owner_path = "owner"


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def _small_thumbnail(task: Task):
    """A 48 px thumbnail for lists: the result once there is one, else the original."""
    if task.status == Status.COMPLETED and task.result_key:
        url = storage.download_url(
            task.result_key, request=None,
            content_type=storage.content_type_for(task.result_key.rsplit(".", 1)[-1]))
    else:
        url = _original_url(task.upload)
    return format_html('<img class="quickbg-thumb" src="{}" alt="" loading="lazy">', url)


def _badge(status: str):
    return format_html('<span class="quickbg-badge {0}">{0}</span>', status)


def _thumbnail(url: str, *, checkerboard: bool = False):
    style = "max-width:320px;max-height:320px;display:block;"
    if checkerboard:
        style += (
            "background-color:#fff;"
            "background-image:linear-gradient(45deg,#ccc 25%,transparent 25%),"
            "linear-gradient(-45deg,#ccc 25%,transparent 25%),"
            "linear-gradient(45deg,transparent 75%,#ccc 75%),"
            "linear-gradient(-45deg,transparent 75%,#ccc 75%);"
            "background-size:16px 16px;"
            "background-position:0 0,0 8px,8px -8px,-8px 0;"
        )
    return format_html(
        '<a href="{0}" target="_blank" rel="noopener"><img src="{0}" alt="" style="{1}"></a>',
        url, style,
    )


def _original_url(upload: Upload) -> str:
    """Served as the detected format, whatever the stored name (older rows kept the client's)."""
    return storage.download_url(upload.original_key, request=None,
                                content_type=storage.content_type_for(upload.format))


MIN_FILENAME_SEARCH = 3
SEARCH_HELP = ("A task or upload id (exact), an owner's email (exact, contains @), or at least "
               f"{MIN_FILENAME_SEARCH} characters of a file name.")


def _search(queryset, term: str, *, id_match, owner_path: str, filename_path: str):
    """The admin search, each kind on its own index (≤ 300 ms at 10M tasks, see the bench).

    Django's default ORs ``icontains`` over every search field, across joins, which no index
    serves. Here: an id is an exact match on the primary key; a term with ``@`` is an owner's
    email, exact (case-insensitive); anything else of at least ``MIN_FILENAME_SEARCH``
    characters is a file-name substring, served by the trigram index (migration 0006). A
    shorter term matches nothing (a trigram index needs three characters).
    """
    term = term.strip()
    if not term:
        return queryset
    found = _as_uuid(term)
    if found is not None:
        return queryset.filter(id_match(found))
    if "@" in term:
        # Resolved to ids first, so the planner sees the owner's real share of the rows.
        return queryset.filter(**{f"{owner_path}_id__in": selectors.user_ids_by_email(term)})
    if len(term) < MIN_FILENAME_SEARCH:
        return queryset.none()
    return queryset.filter(**{f"{filename_path}__icontains": term})


def _expired_note(upload):
    when = upload.expired_at.strftime("%Y-%m-%d %H:%M UTC") if upload.expired_at else "—"
    return format_html("<em>Deleted by retention on {}</em>", when)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows change only through services; staff see them, and act through admin actions."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice is too slow on big tables
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # The changelist (obj is None) keeps change permission so the actions work; the detail
        # page is view-only.
        return obj is None and super().has_change_permission(request, obj)


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = ["id", "owner", "original_filename", "format", "dimensions", "byte_size",
                    "created_at", "expired_at", "tasks_link"]
    list_select_related = ["owner"]
    list_filter = [UploadOwnerFilter, FormatFilter, "created_at"]
    search_fields = ["original_filename"]
    search_help_text = SEARCH_HELP
    raw_id_fields = ["owner"]
    readonly_fields = ["id", "owner", "original_key", "original_filename", "format",
                       "byte_size", "width", "height", "sha256", "created_at", "expired_at",
                       "original_image", "tasks_link"]
    fields = readonly_fields

    @admin.display(description="size")
    def dimensions(self, obj):
        return f"{obj.width}×{obj.height}"

    @admin.display(description="tasks")
    def tasks_link(self, obj):
        url = reverse("admin:removal_task_changelist") + "?" + urlencode({"upload": obj.pk})
        return format_html('<a href="{}">tasks</a>', url)

    @admin.display(description="original")
    def original_image(self, obj):
        if obj.expired_at:
            return _expired_note(obj)
        return _thumbnail(_original_url(obj))

    def get_search_results(self, request, queryset, search_term):
        return _search(queryset, search_term, id_match=lambda pk: Q(pk=pk), owner_path="owner",
                       filename_path="original_filename"), False


class BatchFilter(admin.SimpleListFilter):
    """``?batch=<uuid>``: the members of one batch (linked from the batch page)."""

    title = "batch"
    parameter_name = "batch"
    template = "admin/removal/hidden_filter.html"

    def lookups(self, request, model_admin):
        return [("", "")]

    def queryset(self, request, queryset):
        found = _as_uuid(self.value() or "")
        return queryset.filter(batch_id=found) if found else queryset


class UploadFilter(admin.SimpleListFilter):
    """``?upload=<uuid>``: the tasks of one upload (linked from the upload list)."""

    title = "upload"
    parameter_name = "upload"
    template = "admin/removal/hidden_filter.html"

    def lookups(self, request, model_admin):
        return [("", "")]

    def queryset(self, request, queryset):
        found = _as_uuid(self.value() or "")
        return queryset.filter(upload_id=found) if found else queryset


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["thumbnail", "short_id", "owner", "file_name", "status_badge",
                    "processing_seconds", "memory_mb", "created"]
    list_display_links = ["short_id"]
    list_filter = ["status", ModelFilter, "created_at", OwnerFilter, UploadFilter, BatchFilter]
    list_select_related = ["upload__owner"]
    search_fields = ["upload__original_filename"]
    search_help_text = SEARCH_HELP
    actions = ["retry_failed", "reprocess"]
    raw_id_fields = ["upload"]
    change_form_template = "admin/removal/task/change_form.html"
    fieldsets = [
        (None, {"fields": ["id", "upload", "owner", "batch_link", "status", "progress",
                           "attempts", "model"]}),
        ("Images", {"fields": ["original_image", "result_image"]}),
        ("Outcome", {"fields": ["error_message", "processing_time", "foreground", "confidence",
                                "metrics_table",
                                "options_table", "result_key"]}),
        ("Queue", {"fields": ["rq_job_link", "created_at", "updated_at", "started_at",
                              "finished_at"]}),
    ]
    readonly_fields = ["id", "upload", "owner", "batch_link", "status", "progress", "attempts",
                       "model", "original_image", "result_image", "error_message",
                       "processing_time", "foreground", "confidence", "metrics_table",
                       "options_table", "result_key", "rq_job_link", "created_at", "updated_at",
                       "started_at", "finished_at"]

    class Media:
        css = {"all": ["admin/quickbg/admin.css"]}

    def get_urls(self):
        overview = self.admin_site.admin_view(admin_views.overview)
        retry = self.admin_site.admin_view(self.retry_view)
        reprocess = self.admin_site.admin_view(self.reprocess_view)
        return [path("overview/", overview, name="removal_task_overview"),
                path("<uuid:pk>/retry/", retry, name="removal_task_retry"),
                path("<uuid:pk>/reprocess/", reprocess, name="removal_task_reprocess"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        task = Task.objects.filter(pk=_as_uuid(object_id or "")).first()
        extra_context = dict(extra_context or {})
        if task is not None and self.has_change_permission(request):
            extra_context["can_retry"] = task.status == Status.FAILED
            [(_, skip)] = selectors.reprocess_plan(Task.objects.filter(pk=task.pk))
            extra_context["can_reprocess"] = skip is None
        return super().change_view(request, object_id, form_url, extra_context)

    def _button(self, request, pk, service, done: str):
        """The task page's buttons: POST only, change permission, through the services."""
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        task = get_object_or_404(Task, pk=pk)
        try:
            result = service(task=task)
        except QuickBGError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:removal_task_change", args=[pk]))
        self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:removal_task_change", args=[result.pk]))

    def retry_view(self, request, pk):
        return self._button(request, pk, tasks.task_retry, "The task was queued again.")

    def reprocess_view(self, request, pk):
        return self._button(request, pk, tasks.task_reprocess,
                            "A new task was queued with the current model; this is its page.")

    def get_search_results(self, request, queryset, search_term):
        return _search(queryset, search_term, id_match=lambda pk: Q(pk=pk) | Q(upload_id=pk),
                       owner_path="upload__owner",
                       filename_path="upload__original_filename"), False

    # --- columns --------------------------------------------------------------------------------

    @admin.display(description="")
    def thumbnail(self, obj):
        return _small_thumbnail(obj)

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return format_html('<span class="quickbg-id" title="{}">{}</span>', obj.pk,
                           str(obj.pk)[:8])

    @admin.display(description="owner", ordering="upload__owner__email")
    def owner(self, obj):
        return obj.upload.owner

    @admin.display(description="file name", ordering="upload__original_filename")
    def file_name(self, obj):
        name = obj.upload.original_filename or "—"
        return format_html('<span class="quickbg-name" title="{0}">{0}</span>', name)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return _badge(obj.status)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        local = timezone.localtime(obj.created_at)
        return format_html('<time datetime="{}">{}</time>', local.isoformat(),
                           local.strftime("%Y-%m-%d %H:%M"))

    @admin.display(description="batch")
    def batch_link(self, obj):
        if not obj.batch_id:
            return "—"
        url = reverse("admin:removal_batch_change", args=[obj.batch_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.batch_id)[:8])

    @admin.display(description="time (s)", ordering="processing_time")
    def processing_seconds(self, obj):
        return "—" if obj.processing_time is None else f"{obj.processing_time:.2f}"

    @admin.display(description="memory (MB)")
    def memory_mb(self, obj):
        value = (obj.metrics or {}).get("memory_usage_mb")
        return "—" if value is None else f"{value:.0f}"

    # --- the detail page -----------------------------------------------------------------------

    @admin.display(description="original")
    def original_image(self, obj):
        if obj.upload.expired_at:
            return _expired_note(obj.upload)
        return _thumbnail(_original_url(obj.upload))

    @admin.display(description="result")
    def result_image(self, obj):
        if obj.status == Status.EXPIRED:
            return _expired_note(obj.upload)
        if not obj.result_key:
            return "—"
        url = storage.download_url(
            obj.result_key, request=None,
            content_type=storage.content_type_for(obj.result_key.rsplit(".", 1)[-1]),
        )
        return _thumbnail(url, checkerboard=True)

    @admin.display(description="foreground (result px)")
    def foreground(self, obj):
        box = selectors.task_foreground(obj)
        if box is None:
            return "—"
        return (f"top {box['top']}, left {box['left']}, "
                f"{box['width']} × {box['height']}")

    @admin.display(description="confidence")
    def confidence(self, obj):
        value = selectors.task_confidence(obj)
        return "—" if value is None else f"{value:.1%} of mask pixels decisive"

    @admin.display(description="metrics")
    def metrics_table(self, obj):
        return _table(_flatten(obj.metrics or {}))

    @admin.display(description="options")
    def options_table(self, obj):
        return _table(_flatten(obj.options or {}))

    @admin.display(description="RQ job")
    def rq_job_link(self, obj):
        if not obj.rq_job_id:
            return "—"
        return format_html(
            '{} (<a href="{}">queue dashboard</a>)', obj.rq_job_id, reverse("django_rq:home")
        )

    # --- actions ---------------------------------------------------------------------------------

    @admin.action(description="Retry selected failed tasks", permissions=["change"])
    def retry_failed(self, request, queryset):
        retried = skipped = 0
        for task in queryset.select_related(None).only("id", "status"):
            if task.status != Status.FAILED:
                skipped += 1
                continue
            try:
                tasks.task_retry(task=task)
                retried += 1
            except QuickBGError:
                # Moved on since the page was rendered, past its lifetime attempt limit, or its
                # owner is at the unfinished-task cap (the same service and rules as the API).
                skipped += 1
        self.message_user(
            request,
            f"Retried {retried} failed task(s); skipped {skipped} that were not failed or could "
            "not be retried (attempt limit or the owner's task cap).",
            messages.SUCCESS if retried else messages.WARNING,
        )

    @admin.action(description="Reprocess selected (new task, current model)",
                  permissions=["change"])
    def reprocess(self, request, queryset):
        created = skipped = 0
        # Newest first, as the changelist shows them: the newest selected task of an upload wins.
        for task, skip in selectors.reprocess_plan(queryset, newest_first=True):
            if skip is not None:
                skipped += 1
                continue
            try:
                tasks.task_reprocess(task=task)
            except QuickBGError:
                skipped += 1  # moved on since the plan was made
                continue
            created += 1
        self.message_user(
            request,
            f"Queued {created} new task(s); skipped {skipped} (still queued or processing, "
            "or their upload already has a task queued or processing).",
            messages.SUCCESS if created else messages.WARNING,
        )


class BatchStatusFilter(admin.SimpleListFilter):
    """The derived status (``selectors.batch_status``), filtered in the database."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(value, value) for value in selectors.BATCH_STATUSES]

    def queryset(self, request, queryset):
        if self.value() in selectors.BATCH_STATUSES:
            return queryset.filter(selectors.batch_status_filter(self.value()))
        return queryset


class BatchOwnerFilter(OwnerFilter):
    owner_path = "owner"


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "owner", "size", "status_badge", "progress_bar", "created_at"]
    list_display_links = ["short_id"]
    list_filter = [BatchStatusFilter, "created_at", BatchOwnerFilter]
    list_select_related = ["owner"]
    search_fields = ["owner__email"]
    actions = ["retry_failed_members", "reprocess_batch"]
    paginator = Paginator  # annotated with member counts: no table estimate
    readonly_fields = ["id", "owner", "size", "status_badge", "progress_bar", "member_counts",
                       "model", "options", "webhook_url", "rejected_list", "created_at",
                       "completed_event_at", "members"]
    fields = readonly_fields

    class Media:
        css = {"all": ["admin/quickbg/admin.css"]}

    def get_queryset(self, request):
        return selectors.batches_with_counts(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        found = _as_uuid(search_term)
        if found is not None:
            return queryset.filter(pk=found), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return format_html('<span class="quickbg-id" title="{}">{}</span>', obj.pk,
                           str(obj.pk)[:8])

    @admin.display(description="status")
    def status_badge(self, obj):
        return _badge(selectors.batch_status(selectors.batch_counts(obj)))

    @admin.display(description="progress")
    def progress_bar(self, obj):
        value = selectors.batch_progress(obj)
        return format_html('<progress class="quickbg-progress" max="100" value="{0}">{0}%'
                           '</progress> {0}%', value)

    @admin.display(description="members")
    def member_counts(self, obj):
        counts = selectors.batch_counts(obj)
        url = reverse("admin:removal_task_changelist") + "?" + urlencode({"batch": obj.pk})
        text = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none"
        return format_html('{} (<a href="{}">in the task list</a>)', text, url)

    @admin.display(description="rejected at upload")
    def rejected_list(self, obj):
        return _table([(r.get("name", ""), r.get("detail", "")) for r in obj.rejected or []])

    @admin.display(description="thumbnails")
    def members(self, obj):
        items = format_html_join(
            "", '<figure><a href="{}">{}</a><figcaption title="{}">{} {}</figcaption></figure>',
            ((reverse("admin:removal_task_change", args=[task.pk]), _small_thumbnail(task),
              task.upload.original_filename, _badge(task.status),
              task.upload.original_filename) for task in selectors.batch_members(obj)),
        )
        return format_html('<div class="quickbg-members">{}</div>', items)

    @admin.action(description="Retry failed members", permissions=["change"])
    def retry_failed_members(self, request, queryset):
        retried = skipped = 0
        for batch in queryset:
            try:
                retried += len(batches.batch_retry(batch=batch))
            except QuickBGError:
                skipped += 1
        self.message_user(
            request, f"Retried {retried} failed member(s); {skipped} batch(es) had none to retry "
            "(or were over the cap).", messages.SUCCESS if retried else messages.WARNING)

    @admin.action(description="Reprocess batch (new batch, current model)",
                  permissions=["change"])
    def reprocess_batch(self, request, queryset):
        created = skipped = 0
        for batch in queryset:
            try:
                batches.batch_reprocess(batch=batch)
                created += 1
            except QuickBGError:
                skipped += 1
        self.message_user(
            request, f"Queued {created} new batch(es); skipped {skipped} (still running, or over "
            "the cap).", messages.SUCCESS if created else messages.WARNING)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        else:
            rows.append((name, str(value)))
    return rows


def _table(rows: list[tuple[str, str]]):
    if not rows:
        return "—"
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="quickbg-kv">{}</table>', body)


# --- Webhook deliveries (one row per attempt) ---------------------------------------------------


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Every attempt to deliver a webhook, newest first; "resend" sends the event again now."""

    list_display = ["created_at", "event_type", "url", "attempt", "status", "status_code",
                    "latency", "next_retry_at", "owner"]
    list_filter = ["status", "event_type", "created_at"]
    list_select_related = ["owner"]
    search_fields = ["message_id", "url", "owner__email"]
    search_help_text = "A webhook-id (msg_...), part of a URL, or an owner's email."
    raw_id_fields = ["owner", "task"]
    actions = ["resend"]
    readonly_fields = ["id", "message_id", "event_type", "event_timestamp", "owner", "task",
                       "url", "attempt", "status", "status_code", "latency", "response_excerpt",
                       "error", "due_at", "next_retry_at", "rq_job_id", "created_at",
                       "updated_at", "data"]
    fields = readonly_fields

    @admin.action(description="Resend selected deliveries now", permissions=["change"])
    def resend(self, request, queryset):
        sent = 0
        for delivery in queryset:
            webhooks.delivery_resend(delivery=delivery)
            sent += 1
        self.message_user(request, f"Queued {sent} webhook delivery attempt(s).",
                          messages.SUCCESS)
