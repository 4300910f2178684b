import uuid

from django.conf import settings
from django.db import models


class Upload(models.Model):
    """An original image a user handed us, already validated."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    original_key = models.CharField(max_length=512)
    original_filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=10)
    byte_size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.original_filename or self.original_key} ({self.id})"


class Batch(models.Model):
    """A set of uploads sent in one request (``POST /api/v1/batches``), one Task per member.

    The status is not stored: ``selectors.batches_with_counts`` derives it from the members'
    statuses in one aggregate query, so it can never disagree with them. ``completed_event_at``
    is set by a guarded update when the last member finishes, so ``batch.completed`` fires once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches"
    )
    model = models.CharField(max_length=64)
    options = models.JSONField(default=dict, blank=True)
    webhook_url = models.URLField(max_length=2048, blank=True)
    size = models.PositiveIntegerField(default=0)
    # Members refused at creation: [{"name": ..., "detail": ...}] (no Task was made for them).
    rejected = models.JSONField(default=list, blank=True)
    completed_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {str(self.id)[:8]} ({self.size} images)"


class Task(models.Model):
    """One background-removal run over an Upload. Status moves only by guarded updates."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="tasks")
    # Set when the task is a member of a batch: it then runs on the batch queue.
    batch = models.ForeignKey(
        Batch, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks",
        db_index=True,
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # The model that runs (a name from ``modelstore.MODELS``); ``options`` holds only the output
    # options (``pipeline.options.Options``).
    model = models.CharField(max_length=64)
    options = models.JSONField(default=dict, blank=True)
    result_key = models.CharField(max_length=512, blank=True)
    error_message = models.TextField(blank=True)
    processing_time = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"Task {self.id} ({self.status})"


class IdempotencyKey(models.Model):
    """The first response to ``POST /uploads`` with an ``Idempotency-Key`` header, kept 24 h."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="unique_idempotency_key")
        ]

    def __str__(self) -> str:
        return self.key


class DirectUpload(models.Model):
    """An object key the service issued to a user (``POST /uploads/presign``).

    ``POST /uploads`` with ``s3_key`` accepts only a key issued to the caller, compared exactly;
    a key is used once.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=512, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key
