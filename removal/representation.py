"""The task as ``GET /api/v1/tasks/{id}`` shows it, as plain data: a selector (kept beside
``selectors.py``, which is at its size limit) that the API's ``TaskSerializer`` takes its links
from and that webhook events carry as their ``data``, so workers never render a DRF
serializer. ``tests/services/test_task_representation.py`` holds it equal to the endpoint.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from removal import selectors, storage
from removal.models import Task


def _done(task: Task) -> bool:
    return task.status == Task.Status.COMPLETED and bool(task.result_key)


def task_result_url(task: Task, *, request=None) -> str | None:
    """The stable API link that redirects to a fresh download (relative without ``request``);
    ``None`` until the task completed."""
    if not _done(task):
        return None
    path = f"/api/v1/tasks/{task.id}/result"
    return request.build_absolute_uri(path) if request is not None else path


def task_presigned_url(task: Task, *, request=None) -> str | None:
    """A time-limited link to the result itself; ``None`` until the task completed."""
    if not _done(task):
        return None
    stem = (task.upload.original_filename or "image").rsplit(".", 1)[0]
    return storage.download_url(
        task.result_key, request=request, content_type=storage.content_type_of(task.result_key),
        filename=f"{storage.safe_filename(stem)}-nobg.{storage.extension_of(task.result_key)}",
    )


def _datetime(value: datetime | None) -> str | None:
    # As DRF writes a DateTimeField (ISO 8601 in the current time zone, UTC as "Z").
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _absolute(url: str | None) -> str | None:
    if url is not None and url.startswith("/"):
        return settings.QUICKBG_PUBLIC_URL + url
    return url


def task_representation(task: Task) -> dict:
    """``TaskSerializer``'s fields with links made absolute by ``QUICKBG_PUBLIC_URL`` (an event
    has no request) and signed afresh: JSON-ready."""
    return {
        "task_id": str(task.id),
        "upload_id": str(task.upload_id),
        "filename": task.upload.original_filename,
        "status": str(task.status),
        "progress": task.progress,
        "result_url": _absolute(task_result_url(task)),
        "presigned_url": _absolute(task_presigned_url(task)),
        "error_message": task.error_message,
        "processing_time": task.processing_time,
        "created_at": _datetime(task.created_at),
        "updated_at": _datetime(task.updated_at),
        "attempts": task.attempts,
        "model": task.model,
        "options": task.options,
        "metrics": task.metrics,
        "started_at": _datetime(task.started_at),
        "finished_at": _datetime(task.finished_at),
        "foreground": selectors.task_foreground(task),
        "confidence": selectors.task_confidence(task),
        "cached": task.cached,
    }
