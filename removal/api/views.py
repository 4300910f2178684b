from __future__ import annotations

import logging

from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from removal import storage
from removal.api import idempotency
from removal.api.serializers import (
    PresignRequestSerializer,
    PresignResponseSerializer,
    TaskSerializer,
    UploadAcceptedSerializer,
    UploadCreateSerializer,
    UploadSerializer,
)
from removal.api.throttling import UploadRateThrottle
from removal.errors import Conflict, InvalidInput
from removal.models import Task, Upload
from removal.services import tasks, uploads

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

    def get_throttles(self):
        if self.action == "retry":  # a retry queues work like an upload: the same budget
            return [UploadRateThrottle()]
        return super().get_throttles()

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


def file_download(request, token: str):
    """Serve a local-storage object named by a signed, expiring token (local stand-in for S3).

    Always as the image type the token names (never guessed from the key), an attachment, not
    sniffed, and sandboxed: even a polyglot original cannot run as a page on this origin. Not
    DRF (it streams a file), so its 404s are written as the API's JSON errors here.
    """
    try:
        key, filename, content_type = storage.resolve_download_token(token)
    except signing.SignatureExpired:
        return JsonResponse({"detail": "This download link has expired"}, status=404)
    except signing.BadSignature:
        return JsonResponse({"detail": "Invalid download link"}, status=404)
    if not default_storage.exists(key):
        return JsonResponse({"detail": "File not found"}, status=404)
    response = FileResponse(
        default_storage.open(key, "rb"), as_attachment=True, filename=filename,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
