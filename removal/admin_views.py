"""The staff overview page: the last 24 hours of tasks, processing times, queue and failures.

Mounted by ``TaskAdmin.get_urls`` at ``/admin/removal/task/overview/`` and wrapped in
``admin_site.admin_view``, so only active staff reach it.
"""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse

from removal import stats
from removal.models import Task


def overview(request):
    data = stats.overview(hours=24)
    counts = data["status_counts"]
    statuses = [(value, label, counts[value]) for value, label in Task.Status.choices]
    hourly = [
        {"hour": row["hour"], "counts": [row[value] for value in Task.Status.values]}
        for row in data["hourly"]
    ]
    context = {
        **admin.site.each_context(request),
        "title": "QuickBG overview (last 24 hours)",
        "statuses": statuses,
        "status_labels": Task.Status.labels,
        "hourly": hourly,
        **data,
    }
    return TemplateResponse(request, "admin/removal/overview.html", context)
