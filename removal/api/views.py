from __future__ import annotations

import logging

from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from accounts.authentication import SignedIn
from removal import selectors, serving, storage
from removal.api import idempotency
from removal.api.pagination import BatchMemberPagination
from removal.api.serializers import (
    AccountDeleteSerializer,
    BatchAcceptedSerializer,
    BatchCreateSerializer,
    BatchSerializer,
    BatchTaskSerializer,
    ModelListSerializer,
    PresignRequestSerializer,
    PresignResponseSerializer,
    RetrySerializer,
    TaskSerializer,
    UploadAcceptedSerializer,
    UploadCreateSerializer,
    UploadSerializer,
    WebhookEndpointSerializer,
    WebhookSecretSerializer,
)
from removal.api.throttling import UploadRateThrottle
from removal.batch_archive import batch_zip_chunks
from removal.errors import Conflict, Gone, InvalidInput
from removal.models import Batch, Task, Upload, WebhookEndpoint
from removal.services import batches, retention, tasks, uploads, webhooks

logger = logging.getLogger(__name__)


class UploadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                    viewsets.GenericViewSet):
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
        summary="Upload an image (multipart `file`, `s3_key` or `image_url`) and queue its "
                "processing",
        description="`image_url` is fetched during this request under the SSRF rules (public "
                    "addresses only, every redirect checked, size and time limits); a refused or "
                    "failed fetch is a 400 saying why. `webhook_url` receives this task's event. "
                    "An image you already processed with the same options and model gets the "
                    "stored result at once: the task is `completed` with `cached: true`.",
    )
    def create(self, request):
        if sum(len(files) for _, files in request.FILES.lists()) > 1:
            raise InvalidInput("Send one image per request (field 'file')")
        form = UploadCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        status_code, body = idempotency.perform_once(
            request=request, data=form.validated_data,
            perform=lambda: self._create(request, form.validated_data))
        return Response(body, status=status_code)

    @extend_schema(
        responses={204: None},
        summary="Delete the upload: its stored original, every task's result, and the rows",
        description="A task still queued or processing is cancelled; no result is stored after "
                    "the delete. Another user's upload is a 404.",
    )
    def destroy(self, request, pk=None):
        failed = uploads.upload_delete(upload=self.get_object())
        if failed:
            logger.error("upload %s: storage kept %d object(s): %s", pk, len(failed), failed)
        return Response(status=status.HTTP_204_NO_CONTENT)

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
        common = dict(owner=request.user, options=data.get("options") or {},
                      model=data.get("model"), webhook_url=data.get("webhook_url") or "")
        if "file" in data:
            task = uploads.upload_create_from_file(file=data["file"], **common)
        elif data.get("image_url"):
            task = uploads.upload_create_from_url(url=data["image_url"], **common)
        else:
            task = uploads.upload_create_from_key(key=data["s3_key"], **common)
        body = {
            "upload_id": str(task.upload_id),
            "task_id": str(task.id),
            "status": task.status,
            "message": ("Result reused from an identical earlier task" if task.cached
                        else "Image queued for processing"),
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

    @extend_schema(request=RetrySerializer, responses={202: TaskSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        form = RetrySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        task = tasks.task_retry(task=self.get_object(), model=form.validated_data.get("model"))
        return Response(self.get_serializer(task).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={302: None})
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        task = self.get_object()
        if task.status == Task.Status.EXPIRED:
            raise Gone(_expired_message(task))
        if task.status != Task.Status.COMPLETED or not task.result_key:
            raise Conflict(f"The task is {task.status}; its result is not ready")
        url = self.get_serializer(task).data["presigned_url"]
        return HttpResponseRedirect(url)


def _expired_message(task: Task) -> str:
    days = settings.QUICKBG_RETENTION_DAYS
    when = task.upload.expired_at.date().isoformat() if task.upload.expired_at else "earlier"
    policy = f" (images are kept {days} days)" if days else ""
    return (f"The image and its result were deleted on {when}{policy}; "
            "upload the image again to process it")


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
        description="With an `Idempotency-Key` header a repeat of the same request (the same "
                    "files in the same order, or the same archive, and the same fields) within "
                    "24 h gets the first answer again, and no second batch; the key with "
                    "another request is a 422, and while the first is still running a 409.",
    )
    def create(self, request):
        form = BatchCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        status_code, body = idempotency.perform_once(
            request=request, data=form.validated_data,
            perform=lambda: self._create(request, form.validated_data))
        return Response(body, status=status_code)

    def _create(self, request, data) -> tuple[int, dict]:
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
        return status.HTTP_202_ACCEPTED, body

    @extend_schema(responses={200: BatchSerializer})
    def retrieve(self, request, pk=None):
        """The batch, with its members in the order sent, by page (``?page=``, ``?page_size=``)."""
        batch = self.get_object()
        body = self.get_serializer(batch).data
        paginator = BatchMemberPagination()
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




@extend_schema(
    responses={200: ModelListSerializer},
    summary="Every model: purpose, licence, installed, served by a live worker",
    description="`model=` on uploads, batches and retries takes a `name`. An unknown name is a "
                "400; a model no live worker serves (other than the default) is a 503 naming "
                "the command that starts one.",
)
@api_view(["GET"])
def models(request):
    return Response(serving.model_listing())


@extend_schema(
    request=AccountDeleteSerializer, responses={204: None},
    summary="Delete your account and everything stored for it (needs your password)",
    # OpenAPI 3.0 (and drf-spectacular) leave a DELETE body out of the schema: say it here.
    description='JSON body `{"password": "<your current password>"}`; a wrong password is a 400. '
                "Deletes every upload, task and stored image of yours, then the account.",
)
@api_view(["DELETE"])
def account(request):
    form = AccountDeleteSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    failed = retention.account_delete(user=request.user, password=form.validated_data["password"])
    if failed:
        logger.error("account delete: storage kept %d object(s): %s", len(failed), failed)
    return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                     viewsets.GenericViewSet):
    """Standing webhook endpoints: each receives all of your events, signed with your secret."""

    serializer_class = WebhookEndpointSerializer
    pagination_class = None
    # The secret proves events come from us; a script's key has no need to read or change it.
    api_key_message = ("API keys cannot read or rotate the webhook signing secret: sign in "
                       "(POST /api/v1/auth/token) and send the JWT instead.")

    def get_queryset(self):
        return WebhookEndpoint.objects.filter(owner=self.request.user)

    @extend_schema(summary="Register a URL that receives all your events")
    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        endpoint = webhooks.endpoint_create(owner=request.user, url=form.validated_data["url"])
        return Response(self.get_serializer(endpoint).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        webhooks.endpoint_delete(owner=request.user, endpoint_id=self.get_object().pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], request=None, responses={200: WebhookSecretSerializer},
                   summary="Your webhook signing secret (whsec_...)")
    @extend_schema(methods=["POST"], request=None, responses={200: WebhookSecretSerializer},
                   summary="Rotate your signing secret (the old one also signs for 24 h)")
    @action(detail=False, methods=["get", "post"], pagination_class=None,
            permission_classes=[SignedIn])
    def secret(self, request):
        if request.method == "POST":
            secret = webhooks.secret_rotate(owner=request.user)
        else:
            secret = webhooks.secret_get(owner=request.user)
        return Response(WebhookSecretSerializer(secret).data)
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
    if not storage.exists(key):
        # The link was valid, so the file existed: deleted by retention or by its owner.
        return JsonResponse({"detail": "This file was deleted (by retention or by its owner)"},
                            status=410)
    response = FileResponse(
        storage.open_stream(key), as_attachment=True, filename=filename,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
