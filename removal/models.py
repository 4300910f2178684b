import uuid
from datetime import timedelta

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
    # Set when retention (``services.retention``) deleted the stored original and the results of
    # every task; the rows stay, marked, so the API and the admin can still say what happened.
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            # The API's cursor, ``(created_at, id)`` newest first, one user's uploads.
            models.Index(fields=["owner", "created_at", "id"], name="removal_upl_owner_cursor"),
        ]

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
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            # The reconciler's sweep for batches not yet announced: only the open ones.
            models.Index(fields=["created_at"], condition=models.Q(completed_event_at=None),
                         name="removal_batch_unannounced"),
        ]
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
        # Retention deleted the original and the result; the row is kept (``Upload.expired_at``).
        EXPIRED = "expired", "Expired"

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
    # Every claim ever made on this task (``task_claim`` increments it); unlike ``attempts``, which
    # a retry resets to give the task RQ's retry budget again, nothing resets it: past
    # ``QUICKBG_MAX_TASK_ATTEMPTS`` the task cannot be retried any more.
    lifetime_attempts = models.PositiveIntegerField(default=0)
    # A fresh UUID per claim: only the worker holding this token may record progress, the
    # result or the failure (an attempt count can repeat after a retry resets it).
    claim_token = models.UUIDField(null=True, blank=True)
    # The model that runs (a name from ``modelstore.MODELS``); ``options`` holds only the output
    # options (``pipeline.options.Options``).
    model = models.CharField(max_length=64)
    options = models.JSONField(default=dict, blank=True)
    result_key = models.CharField(max_length=512, blank=True)
    # A background image to composite the cut-out over (remove.bg's ``bg_image_file`` /
    # ``bg_image_url``), stored next to the original; empty for none.
    background_key = models.CharField(max_length=512, blank=True)
    error_message = models.TextField(blank=True)
    processing_time = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)
    # The task this one reprocesses (``services.tasks.task_reprocess``): lets an interrupted
    # ``reprocess`` resume without queueing the same upload twice.
    reprocess_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reprocessed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # True when the result was reused from an identical earlier task (no model run).
    cached = models.BooleanField(default=False)
    # Where this task's own webhook event goes (besides the owner's standing endpoints).
    webhook_url = models.URLField(max_length=2048, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            # The API's cursor ``(created_at, id)`` and reprocess's keyset chunks.
            models.Index(fields=["created_at", "id"], name="removal_task_cursor"),
            # Reprocess's set-based skip rules probe the tasks of one upload by age.
            models.Index(fields=["upload", "created_at"], name="removal_task_upload_created"),
        ]

    def __str__(self) -> str:
        return f"Task {self.id} ({self.status})"


class IdempotencyKey(models.Model):
    """The first response to ``POST /uploads`` with an ``Idempotency-Key`` header, kept
    ``WINDOW`` (24 h); ``services.retention.idempotency_keys_purge`` deletes older ones."""

    WINDOW = timedelta(hours=24)

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
    # The client's file name, kept for the Upload row; the key itself is server-chosen.
    filename = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class WebhookEndpoint(models.Model):
    """A standing webhook target: receives every event of its owner."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2048)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookSecret(models.Model):
    """A user's one signing secret (``whsec_...``, Standard Webhooks), made on first use.

    Kept in clear text: signing needs the key itself (HMAC), as in every Standard Webhooks
    sender. After a rotation the previous secret also signs for a grace period, so receivers can
    switch without losing events (the spec allows several signatures in one header).
    """

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret"
    )
    secret = models.CharField(max_length=128)
    previous_secret = models.CharField(max_length=128, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.owner_id}"


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one URL.

    Attempts of the same event to the same URL share ``message_id`` (the ``webhook-id`` header,
    so receivers can deduplicate) and count up in ``attempt``. A failed attempt records when the
    next one is due (``next_retry_at``); the next attempt is a new row, ``pending`` until a worker
    sends it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="webhook_deliveries")
    message_id = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=64)
    event_timestamp = models.DateTimeField()
    data = models.JSONField(default=dict)
    url = models.URLField(max_length=2048)
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency = models.FloatField(null=True, blank=True, help_text="Seconds")
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    due_at = models.DateTimeField(help_text="When this attempt may be sent")
    next_retry_at = models.DateTimeField(null=True, blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "due_at"])]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} to {self.url} (attempt {self.attempt})"
