from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from removal import storage
from removal.models import Task, Upload


class UploadCreateSerializer(serializers.Serializer):
    file = serializers.FileField(
        required=False, allow_empty_file=True, help_text="The image (JPEG, PNG, WEBP or BMP)."
    )
    s3_key = serializers.CharField(
        required=False, max_length=1024,
        help_text="Key of an object you already put in the bucket under incoming/<your user id>/.",
    )

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("s3_key")):
            raise serializers.ValidationError("Send exactly one of 'file' or 's3_key'.")
        return attrs


class UploadAcceptedSerializer(serializers.Serializer):
    upload_id = serializers.UUIDField()
    task_id = serializers.UUIDField()
    status = serializers.CharField()
    message = serializers.CharField()


class UploadSerializer(serializers.ModelSerializer):
    upload_id = serializers.UUIDField(source="id", read_only=True)
    filename = serializers.CharField(source="original_filename", read_only=True)

    class Meta:
        model = Upload
        fields = ["upload_id", "filename", "format", "byte_size", "width", "height", "sha256",
                  "created_at"]
        read_only_fields = fields


class TaskSerializer(serializers.ModelSerializer):
    task_id = serializers.UUIDField(source="id", read_only=True)
    upload_id = serializers.UUIDField(source="upload.id", read_only=True)
    result_url = serializers.SerializerMethodField()
    presigned_url = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["task_id", "upload_id", "status", "progress", "result_url", "presigned_url",
                  "error_message", "processing_time", "created_at", "updated_at", "attempts",
                  "options", "metrics", "started_at", "finished_at"]
        read_only_fields = fields

    def _done(self, task: Task) -> bool:
        return task.status == Task.Status.COMPLETED and bool(task.result_key)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_result_url(self, task: Task) -> str | None:
        """Stable API URL (JWT) that redirects to a fresh download URL."""
        if not self._done(task):
            return None
        request = self.context.get("request")
        path = f"/api/v1/tasks/{task.id}/result"
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_presigned_url(self, task: Task) -> str | None:
        """Time-limited URL to the PNG itself; needs no token."""
        if not self._done(task):
            return None
        stem = (task.upload.original_filename or "image").rsplit(".", 1)[0]
        return storage.download_url(
            task.result_key, request=self.context.get("request"),
            filename=f"{storage.safe_filename(stem)}-nobg.png",
        )
