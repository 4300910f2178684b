"""Webhook deliveries: every attempt, and "resend"."""

from __future__ import annotations

from django.contrib import admin, messages

from removal.admin.common import (
    ReadOnlyAdmin,
)
from removal.models import WebhookDelivery
from removal.services import webhooks


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
