"""Webhook deliveries (``jobs.deliver_webhook``): signed by a real worker, retried, given up,
recovered by the reconciler when Redis lost them; workers take tasks before webhooks. (Endpoints
and the secret through the API: ``tests/api/test_webhooks.py``; the service alone:
``tests/services/test_webhooks.py``.)

Receivers are LocalHTTPServers on 127.0.0.1 (allowlisted in QUICKBG_FETCH_ALLOW per test) that
verify every request with the ``standardwebhooks`` package itself.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from removal.models import Task, WebhookDelivery
from removal.reconcile import reconcile
from removal.services import webhooks
from tests.factories import completed_task, make_task, make_user
from tests.helpers import deliver_all

Status = WebhookDelivery.Status


# --- endpoints and the secret (API) ------------------------------------------------------------


# --- deliveries by a real worker ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_is_signed_retried_after_a_500_and_carries_the_task(user, client_for, settings,
                                                                  receiver_for, webhooks_queue,
                                                                  empty_queue):
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [1, 1]
    standing = receiver_for(user, answers=(500, 200))
    own = receiver_for(user)
    client = client_for(user)
    assert client.post("/api/v1/webhooks", {"url": standing.url()},
                       format="json").status_code == 201
    task = completed_task(user, webhook_url=own.url("/task"))
    other = completed_task(user)  # no webhook_url: only the standing endpoint hears of it

    webhooks.task_event_emit(task_id=task.pk)
    webhooks.task_event_emit(task_id=task.pk)  # the same outcome twice: one event
    webhooks.task_event_emit(task_id=other.pk)
    assert empty_queue.count == 0 and webhooks_queue.count == 3  # not on the removal queue
    deliver_all()

    first = WebhookDelivery.objects.get(task=task, url=standing.url(), attempt=1)
    assert first.status == Status.FAILED and first.status_code == 500
    assert first.response_excerpt == "boom" and first.latency > 0
    assert timedelta(0) < first.next_retry_at - first.updated_at <= timedelta(seconds=1.5)
    assert WebhookDelivery.objects.get(task=task, url=own.url("/task")).status == Status.SUCCEEDED
    assert len(own.requests) == 1  # the task's own URL: its event only

    time.sleep(max(0.0, (first.next_retry_at - timezone.now()).total_seconds()) + 0.2)
    deliver_all()  # the burst worker's scheduler moves the due retry, then runs it

    retry = WebhookDelivery.objects.get(task=task, url=standing.url(), attempt=2)
    assert retry.status == Status.SUCCEEDED and retry.status_code == 200
    assert retry.next_retry_at is None
    hits = [r for r in standing.requests if json.loads(r["body"])["data"]["task_id"]
            == str(task.pk)]
    assert len(hits) == 2
    assert hits[0]["headers"]["webhook-id"] == hits[1]["headers"]["webhook-id"]
    assert len(standing.verified) == 3  # both attempts for task, one for other: all verified

    payload = json.loads(hits[1]["body"])
    assert payload["type"] == "task.completed"
    assert payload["timestamp"].endswith("Z")
    shown = client.get(f"/api/v1/tasks/{task.pk}").json()
    assert set(payload["data"]) == set(shown)
    assert payload["data"]["status"] == "completed"
    url = payload["data"]["presigned_url"]
    assert url.startswith(settings.QUICKBG_PUBLIC_URL + "/api/v1/files/")
    download = client.get(url.removeprefix(settings.QUICKBG_PUBLIC_URL))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"\x89PNG result bytes"


@pytest.mark.django_db(transaction=True)
def test_tampered_body_or_wrong_secret_is_rejected(user, settings, receiver_for, webhooks_queue):
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    deliver_all()
    assert len(receiver.verified) == 1
    sent = receiver.requests[0]
    secret = webhooks.secret_get(owner=user).secret
    Webhook(secret).verify(sent["body"], sent["headers"])  # the real one verifies
    tampered = sent["body"].replace(b'"status":"completed"', b'"status":"failed"')
    assert tampered != sent["body"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, sent["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.secret_get(owner=make_user()).secret).verify(sent["body"],
                                                                     sent["headers"])
    # The receiver itself answers 400 to the tampered request.
    import httpx

    answer = httpx.post(receiver.url(), content=tampered, headers={
        k: v for k, v in sent["headers"].items() if k.lower().startswith("webhook-")})
    assert answer.status_code == 400 and b"bad signature" in answer.content


@pytest.mark.django_db(transaction=True)
def test_failed_task_event_from_the_job(user, settings, receiver_for, webhooks_queue):
    from removal.jobs import process_task

    receiver = receiver_for(user)
    task = make_task(owner=user, model="no-such-model", webhook_url=receiver.url())
    assert process_task(str(task.pk)) == "failed"
    deliver_all()
    assert [p["type"] for p in receiver.verified] == ["task.failed"]
    assert receiver.verified[0]["data"]["error_message"].startswith("Unknown model")


@pytest.mark.django_db(transaction=True)
def test_slow_receiver_times_out_and_last_attempt_gives_up(user, settings, receiver_for,
                                                            webhooks_queue):
    settings.QUICKBG_WEBHOOK_TIMEOUT = 0.5
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = []
    receiver = receiver_for(user, delay=2)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    started = time.monotonic()
    deliver_all()
    assert time.monotonic() - started < 15
    (only,) = WebhookDelivery.objects.filter(task=task)
    assert only.status == Status.FAILED and only.status_code is None
    assert "timed out" in only.error
    assert only.next_retry_at is None  # no delays left: given up
    assert webhooks_queue.scheduled_job_registry.count == 0


@pytest.mark.django_db(transaction=True)
def test_delivery_lost_by_redis_is_recovered_by_the_reconciler(user, settings, receiver_for,
                                                              webhooks_queue):
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    webhooks_queue.empty()  # Redis lost the job
    delivery = WebhookDelivery.objects.get(task=task)
    assert delivery.status == Status.PENDING
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        updated_at=timezone.now() - timedelta(minutes=5))

    report = reconcile(grace_seconds=30)
    assert report.deliveries_requeued == [str(delivery.pk)]
    assert reconcile(grace_seconds=30).deliveries_requeued == []  # now held by its new job
    deliver_all()
    delivery.refresh_from_db()
    assert delivery.status == Status.SUCCEEDED
    assert len(receiver.verified) == 1


@pytest.mark.django_db(transaction=True)
def test_workers_take_tasks_before_webhooks(user, settings, receiver_for, webhooks_queue,
                                            empty_queue):
    """Deliveries wait behind removal work, never the other way round: a worker given both
    queues runs the task queue's job first even when the delivery was queued earlier."""
    from rq.job import Job

    from removal.services.tasks import task_enqueue

    receiver = receiver_for(user)
    webhooks.task_event_emit(task_id=completed_task(user, webhook_url=receiver.url()).pk)
    task = make_task(owner=user, model="no-such-model")  # fails at once, without the model
    task_enqueue(task=task)
    call_command("run_worker", "--burst", "--no-warmup")
    task.refresh_from_db()
    delivery = WebhookDelivery.objects.get(task__webhook_url=receiver.url(), attempt=1)
    assert task.status == Task.Status.FAILED and delivery.status == Status.SUCCEEDED
    connection = empty_queue.connection
    task_job = Job.fetch(task.rq_job_id, connection=connection, serializer=empty_queue.serializer)
    hook_job = Job.fetch(delivery.rq_job_id, connection=connection,
                         serializer=webhooks_queue.serializer)
    assert task_job.ended_at <= hook_job.started_at
