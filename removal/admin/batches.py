"""Batches: the changelist, members inline, retry failed members, reprocess the batch."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from removal import selectors
from removal.admin.common import (
    ModelFilter,
    OwnerFilter,
    ReadOnlyAdmin,
    _as_uuid,
    _badge,
    _small_thumbnail,
    _table,
)
from removal.errors import QuickBGError
from removal.models import Batch
from removal.services import batches


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
    list_display = ["short_id", "owner", "size", "status_badge", "model", "progress_bar",
                    "created_at"]
    list_display_links = ["short_id"]
    list_filter = [BatchStatusFilter, ModelFilter, "created_at", BatchOwnerFilter]
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
