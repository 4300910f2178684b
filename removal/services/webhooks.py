"""Webhooks, signed to the Standard Webhooks spec: endpoints, the signing secret, events and
their delivery attempts.

- **Targets.** A user's standing endpoints (``WebhookEndpoint``) get every event of theirs; a
  task's own ``webhook_url`` gets that task's event too. Every target passes the SSRF rules of
  ``removal.fetch`` when registered and again at each attempt (DNS may have changed).
- **Events.** ``event_emit`` records one ``WebhookDelivery`` (attempt 1) per target and queues
  its job after commit. Task events (``task.completed``/``task.failed``) are emitted by
  ``task_event_emit`` with the task as ``GET /api/v1/tasks/{id}`` shows it
  (``representation.task_representation``, plain data: no serializer); the download link is
  made fresh at every attempt.
- **Signing.** ``webhook-id`` (the same on every attempt of one event to one URL, so receivers
  can deduplicate), ``webhook-timestamp`` (the attempt's time) and ``webhook-signature``
  (``v1,<base64 HMAC-SHA256>`` by the ``standardwebhooks`` package, the spec's reference
  library) with the owner's ``whsec_`` secret, and also with the previous secret for
  ``ROTATION_GRACE`` after a rotation.
- **Retries.** A non-2xx answer, a timeout or a refused target fails the attempt; the next attempt
  is a new row due after ``QUICKBG_WEBHOOK_RETRY_DELAYS[attempt - 1]`` seconds, scheduled in RQ.
  After the last delay the event is given up (the last row has no ``next_retry_at``). Staff can
  resend any delivery from the admin (``delivery_resend``).
- **Every attempt counts, and there is a last one.** Whatever goes wrong once an attempt is
  ``sending`` (the receiver, our own code, the job's timeout, the worker dying) ends that attempt
  as ``failed`` and schedules the next one, up to ``len(QUICKBG_WEBHOOK_RETRY_DELAYS) + 1``
  attempts in all; after the last, the event is given up.
- **Recovery.** The database is the truth: ``delivery_recover`` (called by the reconciler) puts
  a ``pending`` attempt that no job holds back on the queue (it was never sent), and fails a
  ``sending`` one that no job holds (its worker died or its job timed out), which counts as an
  attempt like any other failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from removal import fetch, queue
from removal.errors import InvalidInput, NotFound
from removal.models import Task, WebhookDelivery, WebhookEndpoint, WebhookSecret
from removal.representation import task_representation

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
TASK_EVENTS = {Task.Status.COMPLETED: "task.completed", Task.Status.FAILED: "task.failed"}
ROTATION_GRACE = timedelta(hours=24)
EXCERPT_BYTES = 1024


# --- The signing secret -------------------------------------------------------------------------


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_get(*, owner) -> WebhookSecret:
    """The owner's signing secret, created on first use."""
    secret, _ = WebhookSecret.objects.get_or_create(owner=owner,
                                                    defaults={"secret": _new_secret()})
    return secret


def secret_rotate(*, owner) -> WebhookSecret:
    """A new secret; the old one keeps signing (as a second signature) for ``ROTATION_GRACE``."""
    with transaction.atomic():
        current = secret_get(owner=owner)
        WebhookSecret.objects.filter(pk=current.pk).update(
            previous_secret=current.secret, secret=_new_secret(), rotated_at=timezone.now()
        )
    return WebhookSecret.objects.get(pk=current.pk)


def sign(*, secret: WebhookSecret, message_id: str, timestamp, body: str) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` signature per valid secret."""
    signatures = [Webhook(secret.secret).sign(message_id, timestamp, body)]
    if (secret.previous_secret and secret.rotated_at
            and timezone.now() - secret.rotated_at < ROTATION_GRACE):
        signatures.append(Webhook(secret.previous_secret).sign(message_id, timestamp, body))
    return " ".join(signatures)


# --- Standing endpoints -------------------------------------------------------------------------


def endpoint_create(*, owner, url: str) -> WebhookEndpoint:
    fetch.check_url(url)
    limit = settings.QUICKBG_WEBHOOK_MAX_ENDPOINTS
    with transaction.atomic():
        list(type(owner).objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
        if WebhookEndpoint.objects.filter(owner=owner).count() >= limit:
            raise InvalidInput(f"You have {limit} webhook endpoints (the limit); delete one first")
        if WebhookEndpoint.objects.filter(owner=owner, url=url).exists():
            raise InvalidInput("This webhook URL is already registered")
        return WebhookEndpoint.objects.create(owner=owner, url=url)


def endpoint_delete(*, owner, endpoint_id) -> None:
    """Remove a standing endpoint; its attempts not yet sent are cancelled (marked failed),
    except those a task asked for itself with the same ``webhook_url``."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.filter(owner=owner, pk=endpoint_id).first()
        if endpoint is None:
            raise NotFound("No such webhook endpoint")
        endpoint.delete()
        (WebhookDelivery.objects.filter(owner=owner, url=endpoint.url, status=Status.PENDING)
         .exclude(task__webhook_url=endpoint.url)
         .update(status=Status.FAILED, error="The webhook endpoint was deleted",
                 updated_at=timezone.now()))


# --- Events -------------------------------------------------------------------------------------


def _message_id(seed: str) -> str:
    return "msg_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def event_emit(*, owner, event_type: str, data: dict, url: str | None = None,
               task: Task | None = None, event_key: str | None = None) -> None:
    """Record and queue (after commit) one delivery per target: the owner's standing endpoints,
    plus ``url`` when given. ``event_key`` makes emitting the same event twice a no-op (the same
    task outcome seen by two code paths)."""
    targets = list(WebhookEndpoint.objects.filter(owner=owner).values_list("url", flat=True))
    if url and url not in targets:
        targets.append(url)
    now = timezone.now()
    data = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    with transaction.atomic():
        for target in targets:
            seed = f"{event_key}|{target}" if event_key else uuid.uuid4().hex
            message_id = _message_id(seed)
            if event_key and WebhookDelivery.objects.filter(message_id=message_id).exists():
                continue
            delivery = WebhookDelivery.objects.create(
                owner=owner, task=task, message_id=message_id, event_type=event_type,
                event_timestamp=now, data=data, url=target, attempt=1, due_at=now,
            )
            _enqueue(delivery)


def task_event_emit(*, task_id) -> None:
    """Emit ``task.completed`` or ``task.failed`` for a task that just reached that status.

    Safe to call twice for the same outcome: the event key is the task and its finish time."""
    task = Task.objects.select_related("upload__owner").filter(pk=task_id).first()
    if task is None or task.status not in TASK_EVENTS:
        return
    finished = task.finished_at.isoformat() if task.finished_at else ""
    event_emit(
        owner=task.upload.owner, event_type=TASK_EVENTS[task.status],
        data=task_representation(task), url=task.webhook_url or None, task=task,
        event_key=f"{task.pk}|{task.status}|{finished}",
    )


def _enqueue(delivery: WebhookDelivery, *, at=None) -> None:
    job_id = f"webhook-{delivery.pk}-{uuid.uuid4().hex[:8]}"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(rq_job_id=job_id)
    delivery.rq_job_id = job_id
    queue.enqueue_webhook(delivery_id=delivery.pk, job_id=job_id, at=at)


# --- Delivery (the job's work) ----------------------------------------------------------------


def _payload(delivery: WebhookDelivery) -> str:
    data = delivery.data
    if delivery.task_id and delivery.event_type in TASK_EVENTS.values():
        task = Task.objects.select_related("upload").filter(pk=delivery.task_id).first()
        if task is not None and task.status == Task.Status.COMPLETED:
            fresh = task_representation(task)  # a new download link per attempt: old ones expire
            data = {**data, "result_url": fresh["result_url"],
                    "presigned_url": fresh["presigned_url"]}
    payload = {"type": delivery.event_type,
               "timestamp": delivery.event_timestamp.isoformat().replace("+00:00", "Z"),
               "data": data}
    return json.dumps(payload, separators=(",", ":"), cls=DjangoJSONEncoder)


def retry_delay(attempt: int) -> float | None:
    """Seconds from a failed ``attempt`` (1-based) to the next one; None when it was the last."""
    delays = settings.QUICKBG_WEBHOOK_RETRY_DELAYS
    return delays[attempt - 1] if attempt <= len(delays) else None


def webhook_deliver(*, delivery_id) -> str:
    """Send one pending attempt and record what happened. Returns the attempt's new status."""
    now = timezone.now()
    if WebhookDelivery.objects.filter(pk=delivery_id, status=Status.PENDING).update(
            status=Status.SENDING, updated_at=now) != 1:
        return "skipped"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    started = time.monotonic()
    status_code, excerpt, error = None, "", ""
    try:
        answer = _send(delivery)
        status_code = answer.status_code
        excerpt = answer.body.decode("utf-8", "replace")
        if not 200 <= status_code < 300:
            error = f"The receiver answered HTTP {status_code}"
    except fetch.FetchRefused as exc:
        error = exc.detail
    except BaseException as exc:  # our side (or RQ's job timeout): still a counted attempt
        logger.exception("webhook %s attempt %s: delivery failed", delivery.message_id,
                         delivery.attempt)
        error = f"The delivery failed on QuickBG's side ({type(exc).__name__})"
        _record(delivery, status_code=None, excerpt="", error=error,
                latency=round(time.monotonic() - started, 4))
        if not isinstance(exc, Exception):
            raise
        return Status.FAILED
    latency = round(time.monotonic() - started, 4)
    return _record(delivery, status_code=status_code, excerpt=excerpt, error=error,
                   latency=latency)


def _send(delivery: WebhookDelivery) -> fetch.Response:
    """Build, sign and POST one attempt (bounded by ``QUICKBG_WEBHOOK_TIMEOUT`` in all)."""
    body = _payload(delivery)
    sent_at = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "QuickBG-Webhooks/1.0",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": sign(secret=secret_get(owner=delivery.owner),
                                  message_id=delivery.message_id, timestamp=sent_at, body=body),
    }
    return fetch.post(delivery.url, content=body.encode(), headers=headers,
                      excerpt_bytes=EXCERPT_BYTES, timeout=settings.QUICKBG_WEBHOOK_TIMEOUT)


def _record(delivery: WebhookDelivery, *, status_code, excerpt: str, error: str,
            latency: float, expected_updated_at=None) -> str:
    """End a ``sending`` attempt (guarded); on failure schedule the next one if any is left.
    Returns the status written, or ``"skipped"`` when the attempt had moved on already."""
    now = timezone.now()
    sending = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING)
    if expected_updated_at is not None:
        sending = sending.filter(updated_at=expected_updated_at)
    fields = dict(status_code=status_code, latency=latency, response_excerpt=excerpt,
                  error=error[:2000], updated_at=now)
    if not error:
        sending.update(status=Status.SUCCEEDED, **fields)
        return Status.SUCCEEDED
    delay = retry_delay(delivery.attempt)
    next_at = now + timedelta(seconds=delay) if delay is not None else None
    with transaction.atomic():
        if sending.update(status=Status.FAILED, next_retry_at=next_at, **fields) != 1:
            return "skipped"
        if next_at:
            retry = WebhookDelivery.objects.create(
                owner_id=delivery.owner_id, task_id=delivery.task_id,
                message_id=delivery.message_id, event_type=delivery.event_type,
                event_timestamp=delivery.event_timestamp, data=delivery.data, url=delivery.url,
                attempt=delivery.attempt + 1, due_at=next_at,
            )
            _enqueue(retry, at=next_at)
    logger.warning("webhook %s attempt %s to %s failed (%s); %s", delivery.message_id,
                   delivery.attempt, delivery.url, error,
                   f"next attempt at {next_at.isoformat()}" if next_at else "giving up")
    return Status.FAILED


def delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send the event again now (staff, from the admin): a new attempt of the same message."""
    now = timezone.now()
    last = (WebhookDelivery.objects.filter(message_id=delivery.message_id, url=delivery.url)
            .order_by("-attempt").values_list("attempt", flat=True).first()) or 0
    with transaction.atomic():
        resend = WebhookDelivery.objects.create(
            owner_id=delivery.owner_id, task_id=delivery.task_id, message_id=delivery.message_id,
            event_type=delivery.event_type, event_timestamp=delivery.event_timestamp,
            data=delivery.data, url=delivery.url, attempt=last + 1, due_at=now,
        )
        _enqueue(resend)
    return resend


INTERRUPTED = ("The attempt did not finish (its worker stopped or the job ran past its time "
               "limit)")


def delivery_recover(*, delivery_id, status: str, updated_at) -> bool:
    """Recover an attempt no job holds (the reconciler calls this): a ``pending`` one goes back
    on the queue; a ``sending`` one failed (``INTERRUPTED``), and its next attempt, if any is
    left, is scheduled like after any failure (receivers deduplicate by ``webhook-id``).

    Guarded on the status and ``updated_at`` the caller saw, so an attempt that moved on since
    is left alone."""
    if status == Status.SENDING:
        delivery = WebhookDelivery.objects.filter(pk=delivery_id, status=status,
                                                  updated_at=updated_at).first()
        if delivery is None:
            return False
        return _record(delivery, status_code=None, excerpt="", error=INTERRUPTED,
                       latency=0.0, expected_updated_at=updated_at) == Status.FAILED
    with transaction.atomic():
        moved = WebhookDelivery.objects.filter(
            pk=delivery_id, status=status, updated_at=updated_at
        ).update(status=Status.PENDING, updated_at=timezone.now())
        if moved != 1:
            return False
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        # A retry lost while it waited keeps its time; an overdue one goes now.
        _enqueue(delivery, at=delivery.due_at if delivery.due_at > timezone.now() else None)
    return True
