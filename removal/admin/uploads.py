"""Uploads: the changelist and the upload page (read-only; its tasks are a link away)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from removal.admin.common import (
    SEARCH_HELP,
    FormatFilter,
    ReadOnlyAdmin,
    UploadOwnerFilter,
    _expired_note,
    _original_url,
    _search,
    _thumbnail,
)
from removal.models import Upload


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
        return _search(request, self, queryset, search_term, id_match=lambda pk: Q(pk=pk),
                       owner_path="owner", upload_path="pk"), False
