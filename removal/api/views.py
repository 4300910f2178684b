from __future__ import annotations

import logging
import mimetypes

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.db import connection
from django.http import FileResponse, Http404, HttpResponseRedirect, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from removal import modelstore, queue, selectors, stats, storage
from removal.api import idempotency
from removal.api.pagination import Pagination
from removal.api.serializers import (
    BatchAcceptedSerializer,
    BatchCreateSerializer,
    BatchSerializer,
    BatchTaskSerializer,
    PresignRequestSerializer,
    PresignResponseSerializer,
    TaskSerializer,
    UploadAcceptedSerializer,
    UploadCreateSerializer,
    UploadSerializer,
)
from removal.api.throttling import UploadRateThrottle
from removal.batch_archive import batch_zip_chunks
from removal.errors import Conflict, InvalidInput
from removal.models import Batch, Task, Upload
from removal.services import batches, tasks, uploads

logger = logging.getLogger(__name__)


class UploadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = UploadSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        return Upload.objects.filter(owner=self.request.user)

    def get_throttles(self):
        if self.action in ("create", "presign"):
            return [UploadRateThrottle()]
        return super().get_throttles()

    @extend_schema(
        request=UploadCreateSerializer, responses={202: UploadAcceptedSerializer},
        summary="Upload an image (multipart `file`, or `s3_key`) and queue its processing",
    )
    def create(self, request):
        if sum(len(files) for _, files in request.FILES.lists()) > 1:
            raise InvalidInput("Send one image per request (field 'file')")
        form = UploadCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if not key:
            status_code, body = self._create(request, form.validated_data)
        else:
            status_code, body = idempotency.replay_or_perform(
                owner=request.user, key=key,
                request_hash=idempotency.request_hash(form.validated_data),
                perform=lambda: self._create(request, form.validated_data),
            )
        return Response(body, status=status_code)

    @extend_schema(request=PresignRequestSerializer, responses={201: PresignResponseSerializer},
                   summary="Get a presigned S3 POST to upload an image directly (S3 only)")
    @action(detail=False, methods=["post"], parser_classes=[JSONParser, FormParser])
    def presign(self, request):
        form = PresignRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        body = uploads.direct_upload_issue(
            owner=request.user, filename=form.validated_data["filename"]
        )
        return Response(body, status=status.HTTP_201_CREATED)

    def _create(self, request, data) -> tuple[int, dict]:
        options, model = data.get("options") or {}, data.get("model")
        if "file" in data:
            task = uploads.upload_create_from_file(
                owner=request.user, file=data["file"], options=options, model=model
            )
        else:
            task = uploads.upload_create_from_key(
                owner=request.user, key=data["s3_key"], options=options, model=model
            )
        body = {
            "upload_id": str(task.upload_id),
            "task_id": str(task.id),
            "status": task.status,
            "message": "Image queued for processing",
        }
        return status.HTTP_202_ACCEPTED, body


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TaskSerializer

    def get_queryset(self):
        return Task.objects.filter(upload__owner=self.request.user).select_related("upload")

    @extend_schema(request=None, responses={202: TaskSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        task = tasks.task_retry(task=self.get_object())
        return Response(self.get_serializer(task).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={302: None})
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        task = self.get_object()
        if task.status != Task.Status.COMPLETED or not task.result_key:
            raise Conflict(f"The task is {task.status}; its result is not ready")
        url = self.get_serializer(task).data["presigned_url"]
        return HttpResponseRedirect(url)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Batches: many images in one request (``services.batches``); one zip of results back."""

    serializer_class = BatchSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.batches_with_counts(Batch.objects.filter(owner=self.request.user))

    def get_throttles(self):
        if self.action == "create":  # one batch is one request for the upload throttle
            return [UploadRateThrottle()]
        return super().get_throttles()

    @extend_schema(
        request=BatchCreateSerializer, responses={202: BatchAcceptedSerializer},
        summary="Upload many images (repeated `files`, or one zip `archive`) as one batch",
    )
    def create(self, request):
        form = BatchCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        common = dict(owner=request.user, options=data.get("options") or {},
                      model=data.get("model"), webhook_url=data.get("webhook_url") or "")
        if data.get("archive"):
            created = batches.batch_create_from_archive(archive=data["archive"], **common)
        else:
            created = batches.batch_create_from_files(files=data["files"], **common)
        body = {
            "batch_id": str(created.batch.id),
            "count": len(created.tasks),
            "task_ids": [str(task.id) for task in created.tasks],
            "rejected": created.rejected,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: BatchSerializer})
    def retrieve(self, request, pk=None):
        """The batch, with its tasks paginated (``?page=``, ``?page_size=``)."""
        batch = self.get_object()
        body = self.get_serializer(batch).data
        paginator = Pagination()
        members = selectors.batch_members(batch)
        page = paginator.paginate_queryset(members, request, view=self)
        body["tasks"] = paginator.get_paginated_response(
            BatchTaskSerializer(page, many=True, context=self.get_serializer_context()).data
        ).data
        return Response(body)

    @extend_schema(responses={(200, "application/zip"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        batch = self.get_object()
        response = StreamingHttpResponse(batch_zip_chunks(batch), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.id}.zip"'
        return response

    @extend_schema(request=None, responses={202: BatchSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        batches.batch_retry(batch=self.get_object())
        return Response(self.get_serializer(self.get_object()).data,
                        status=status.HTTP_202_ACCEPTED)


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@extend_schema(auth=[], responses={200: dict, 503: dict})
@api_view(["GET"])
@permission_classes([AllowAny])
def health(request):
    checks = {"api": "ok"}
    probes = {
        "database": _database_ping,
        "redis": lambda: queue.get_queue().connection.ping(),
        "storage": storage.check,
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is a failed check
            logger.warning("health check %s failed: %s", name, exc)
            checks[name] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    state = stats.queue_state()  # never raises
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "service": "quickbg",
        "checks": checks,
        # Informational: a web-only process has no weights, and a deep queue is not an outage.
        "model": {
            "name": settings.QUICKBG_MODEL,
            "present": modelstore.is_present(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL),
        },
        "queue": {"name": state.name, "depth": state.queued, "running": state.started,
                  "failed": state.failed, "workers": state.workers} if state.available else None,
    }
    return Response(body, status=200 if healthy else 503)


def file_download(request, token: str):
    """Serve a local-storage object named by a signed, expiring token (local stand-in for S3)."""
    try:
        key, filename = storage.resolve_download_token(token)
    except signing.SignatureExpired:
        raise Http404("This download link has expired") from None
    except signing.BadSignature:
        raise Http404("Invalid download link") from None
    if not default_storage.exists(key):
        raise Http404("File not found")
    return FileResponse(
        default_storage.open(key, "rb"), as_attachment=bool(filename), filename=filename or None,
        content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
    )
