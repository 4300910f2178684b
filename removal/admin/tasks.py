"""Tasks: the changelist, the task page with its buttons, retry and reprocess."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from removal import admin_views, selectors, storage
from removal.admin.common import (
    SEARCH_HELP,
    ModelFilter,
    OwnerFilter,
    ReadOnlyAdmin,
    Status,
    _as_uuid,
    _badge,
    _expired_note,
    _flatten,
    _original_url,
    _search,
    _small_thumbnail,
    _table,
    _thumbnail,
    id_filter,
)
from removal.errors import QuickBGError
from removal.models import Task
from removal.services import tasks

BatchFilter = id_filter("batch", doc="the members of one batch (linked from the batch page)")
UploadFilter = id_filter("upload", doc="the tasks of one upload (linked from the upload list)")


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["thumbnail", "short_id", "owner", "file_name", "status_badge", "model",
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
        return _search(request, self, queryset, search_term,
                       id_match=lambda pk: Q(pk=pk) | Q(upload_id=pk),
                       owner_path="upload__owner", upload_path="upload_id"), False

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
        url = storage.download_url(obj.result_key, request=None,
                                   content_type=storage.content_type_of(obj.result_key))
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
