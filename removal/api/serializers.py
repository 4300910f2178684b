from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from removal import modelstore, representation, selectors
from removal.models import Batch, Task, Upload, WebhookEndpoint
from removal.pipeline.options import InvalidOption, Options


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "boolean"}, {"type": "integer"}]})
class OptionField(serializers.Field):
    """An output option as sent: a form string, or a JSON string/boolean/number.
    ``Options.parse`` validates it (and names the field when it is wrong)."""

    def to_internal_value(self, data):
        if not isinstance(data, (str, bool, int)):
            raise serializers.ValidationError("must be a string, boolean or number")
        return data

    def to_representation(self, value):
        return value


def option_fields(*, removebg: bool = False, help_texts: dict | None = None) -> dict:
    """A field per option of the contract (``Options.contract()``), with its help text (or the
    one in ``help_texts``); ``removebg=True``: only the options the remove.bg endpoint takes."""
    return {spec.name: OptionField(required=False,
                                   help_text=(help_texts or {}).get(spec.name, spec.help))
            for spec in Options.contract() if spec.removebg or not removebg}


class OptionsMixin(serializers.Serializer):
    """The output options and ``model`` of a single upload, parsed by ``Options.parse``."""

    model = serializers.ChoiceField(
        choices=sorted(modelstore.MODELS), required=False,
        help_text="The model to run (default: the server's QUICKBG_MODEL); GET /api/v1/models "
                  "lists them and which are served. One no running worker serves is a 503.",
        error_messages={"invalid_choice": "Unknown model \"{input}\"; GET /api/v1/models lists "
                                          "the models"},
    )

    def get_fields(self):
        return {**super().get_fields(), **option_fields()}

    def validate(self, attrs):
        raw = {name: attrs.pop(name) for name in Options.names() if name in attrs}
        try:
            attrs["options"] = Options.parse(raw).to_dict()
        except InvalidOption as exc:
            raise serializers.ValidationError({exc.field: exc.message}) from None
        return attrs


class UploadCreateSerializer(OptionsMixin):
    file = serializers.FileField(
        required=False, allow_empty_file=True, help_text="The image (JPEG, PNG, WEBP or BMP)."
    )
    s3_key = serializers.CharField(
        required=False, max_length=1024,
        help_text="A key from POST /api/v1/uploads/presign whose object you have uploaded.",
    )
    image_url = serializers.CharField(
        required=False, max_length=2048,
        help_text="An http(s) URL of the image, fetched at once by the server (public addresses "
                  "only, redirects checked, size and time limited); validated like a file.",
    )
    webhook_url = serializers.CharField(
        required=False, max_length=2048,
        help_text="An http(s) URL that receives this task's task.completed or task.failed "
                  "event, signed to the Standard Webhooks spec.",
    )

    def validate(self, attrs):
        if sum(bool(attrs.get(name)) for name in ("file", "s3_key", "image_url")) != 1:
            raise serializers.ValidationError(
                "Send exactly one of 'file', 's3_key' or 'image_url'.")
        return super().validate(attrs)


class OptionSpecSerializer(serializers.Serializer):
    """One output option of the contract (``Options.contract()``)."""

    name = serializers.CharField()
    type = serializers.CharField(help_text="choice (one of choices), boolean, integer (minimum "
                                 "to maximum) or string.")
    default = serializers.JSONField(allow_null=True, help_text="QuickBG's default (the remove.bg "
                                    "endpoint has its own for size, format, crop, crop_margin).")
    help = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField(), allow_null=True)
    minimum = serializers.IntegerField(allow_null=True)
    maximum = serializers.IntegerField(allow_null=True)
    removebg = serializers.BooleanField(help_text="POST /v1.0/removebg takes it too.")


class OptionListSerializer(serializers.Serializer):
    options = OptionSpecSerializer(many=True)


class RetrySerializer(serializers.Serializer):
    model = serializers.ChoiceField(
        choices=sorted(modelstore.MODELS), required=False,
        help_text="Run the retry on this model instead of the task's own (GET /api/v1/models).",
        error_messages=OptionsMixin._declared_fields["model"].error_messages,
    )


class ModelSerializer(serializers.Serializer):
    """One catalogue entry (``serving.model_listing``)."""

    name = serializers.CharField()
    purpose = serializers.CharField()
    licence = serializers.CharField()
    commercial_use = serializers.BooleanField()
    allowed = serializers.BooleanField(help_text="False: refused by this server's licence "
                                       "setting (QUICKBG_ALLOW_NONCOMMERCIAL_MODELS).")
    engine = serializers.CharField()
    input_size = serializers.IntegerField()
    memory_mb = serializers.IntegerField(help_text="Estimated worker memory with it loaded.")
    checksum = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    approx_mb = serializers.FloatField(allow_null=True)
    installed = serializers.BooleanField()
    served = serializers.BooleanField(allow_null=True, help_text="A live worker serves it "
                                      "(null: Redis unreachable).")
    workers = serializers.IntegerField(allow_null=True)
    default = serializers.BooleanField()


class ModelListSerializer(serializers.Serializer):
    default_model = serializers.CharField()
    models = ModelSerializer(many=True)
    not_listed = serializers.DictField(child=serializers.CharField(),
                                       help_text="rembg sessions not offered, and why.")


class AccountDeleteSerializer(serializers.Serializer):
    password = serializers.CharField(
        help_text="Your current password: deleting an account cannot be undone.",
        style={"input_type": "password"}, trim_whitespace=False,
    )


class PresignRequestSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255, help_text="Name of the file to upload.")


class PresignResponseSerializer(serializers.Serializer):
    s3_key = serializers.CharField()
    url = serializers.URLField()
    fields = serializers.DictField(child=serializers.CharField())
    expires_in = serializers.IntegerField()
    max_bytes = serializers.IntegerField()


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


class ForegroundSerializer(serializers.Serializer):
    top = serializers.IntegerField()
    left = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class TaskSerializer(serializers.ModelSerializer):
    task_id = serializers.UUIDField(source="id", read_only=True)
    upload_id = serializers.UUIDField(source="upload.id", read_only=True)
    filename = serializers.CharField(source="upload.original_filename", read_only=True)
    result_url = serializers.SerializerMethodField()
    presigned_url = serializers.SerializerMethodField()
    foreground = serializers.SerializerMethodField()
    confidence = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["task_id", "upload_id", "filename", "status", "progress", "result_url",
                  "presigned_url", "error_message", "processing_time", "created_at",
                  "updated_at", "attempts", "model", "options", "metrics", "started_at",
                  "finished_at", "foreground", "confidence", "cached"]
        read_only_fields = fields

    @extend_schema_field(ForegroundSerializer(allow_null=True))
    def get_foreground(self, task: Task) -> dict | None:
        """Where the subject is in the result (result pixels); null until completed."""
        return selectors.task_foreground(task)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_confidence(self, task: Task) -> float | None:
        """Share of decisive mask pixels (alpha < 0.05 or > 0.95); low means: take a look."""
        return selectors.task_confidence(task)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_result_url(self, task: Task) -> str | None:
        """Stable API URL (JWT) that redirects to a fresh download URL."""
        return representation.task_result_url(task, request=self.context.get("request"))

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_presigned_url(self, task: Task) -> str | None:
        """Time-limited URL to the PNG itself; needs no token."""
        return representation.task_presigned_url(task, request=self.context.get("request"))


class WebhookEndpointSerializer(serializers.ModelSerializer):
    # Checked by removal.fetch (scheme, credentials, public address), which says what is wrong.
    url = serializers.CharField(max_length=2048,
                                help_text="An http(s) URL that receives all your events.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "created_at"]
        read_only_fields = ["id", "created_at"]


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(
        help_text="The whsec_ secret every webhook to you is signed with (Standard Webhooks)."
    )
    rotated_at = serializers.DateTimeField(allow_null=True)


class BatchCreateSerializer(OptionsMixin):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), required=False,
        help_text="The images: repeat the 'files' part once per image.",
    )
    archive = serializers.FileField(
        required=False, allow_empty_file=True, help_text="Or one zip holding the images.",
    )
    webhook_url = serializers.URLField(
        required=False, allow_blank=True, max_length=2048,
        help_text="Receives one signed batch.completed event when every member has finished.",
    )

    def validate(self, attrs):
        if bool(attrs.get("files")) == bool(attrs.get("archive")):
            raise serializers.ValidationError(
                "Send either repeated 'files' parts or one 'archive' (a zip), not both.")
        return super().validate(attrs)


class BatchTaskSerializer(TaskSerializer):
    """A batch member: the task, plus the file name it was sent under."""

    filename = serializers.CharField(source="upload.original_filename", read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = ["filename", *TaskSerializer.Meta.fields]
        read_only_fields = fields


class BatchRejectedSerializer(serializers.Serializer):
    name = serializers.CharField()
    detail = serializers.CharField()


class BatchAcceptedSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    count = serializers.IntegerField()
    task_ids = serializers.ListField(child=serializers.UUIDField())
    rejected = BatchRejectedSerializer(many=True)


class BatchSerializer(serializers.ModelSerializer):
    """A batch annotated by ``selectors.batches_with_counts``."""

    batch_id = serializers.UUIDField(source="id", read_only=True)
    count = serializers.IntegerField(source="size", read_only=True)
    status = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = ["batch_id", "status", "count", "counts", "progress", "model", "options",
                  "webhook_url", "rejected", "created_at", "download_url"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=selectors.BATCH_STATUSES))
    def get_status(self, batch: Batch) -> str:
        return selectors.batch_status(selectors.batch_counts(batch))

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_counts(self, batch: Batch) -> dict:
        return selectors.batch_counts(batch)

    def get_progress(self, batch: Batch) -> int:
        return selectors.batch_progress(batch)

    def get_download_url(self, batch: Batch) -> str:
        request = self.context.get("request")
        path = f"/api/v1/batches/{batch.id}/download"
        return request.build_absolute_uri(path) if request else path
