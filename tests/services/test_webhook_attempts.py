"""Every webhook attempt ends, counts, and the last one is the last: a receiver that trickles,
an error on our side, a worker that died mid-send, and the share of image workers that may
deliver at once (real workers, receivers on 127.0.0.1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from removal import queue
from removal.models import Task, WebhookDelivery
from removal.reconcile import reconcile
from removal.services import webhooks
from removal.services.tasks import task_enqueue
from tests.factories import completed_task, make_task
from tests.helpers import TricklingServer, deliver_all

Status = WebhookDelivery.Status
pytestmark = pytest.mark.django_db(transaction=True)


def attempts(task) -> list[tuple[int, str]]:
    return list(WebhookDelivery.objects.filter(task=task).order_by("attempt")
                .values_list("attempt", "status"))


def test_a_trickling_receiver_fails_the_attempt_at_the_timeout_and_the_next_is_scheduled(
        user, settings, webhooks_queue):
    settings.QUICKBG_WEBHOOK_TIMEOUT = 1.0
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [60]
    with TricklingServer(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 500, interval=0.05) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        task = completed_task(user, webhook_url=server.url("/hook"))
        webhooks.task_event_emit(task_id=task.pk)
        deliver_all()
    first = WebhookDelivery.objects.get(task=task, attempt=1)
    assert first.status == Status.FAILED and "timed out (limit 1 s)" in first.error
    assert attempts(task) == [(1, Status.FAILED), (2, Status.PENDING)]


def test_an_error_on_our_side_is_a_counted_attempt_not_a_stuck_row(user, settings,
                                                                   receiver_for, webhooks_queue,
                                                                   monkeypatch):
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [60]
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)

    def broken_signer(**kwargs):
        raise RuntimeError("signing broke")

    monkeypatch.setattr(webhooks, "sign", broken_signer)
    deliver_all()
    first = WebhookDelivery.objects.get(task=task, attempt=1)
    assert first.status == Status.FAILED
    assert first.error == "The delivery failed on QuickBG's side (RuntimeError)"
    assert attempts(task) == [(1, Status.FAILED), (2, Status.PENDING)]
    assert receiver.requests == []


def _die_mid_send(delivery: WebhookDelivery, webhooks_queue) -> None:
    """What a worker SIGKILLed (or a job killed at its timeout) mid-send leaves: a ``sending``
    row, no job, minutes old."""
    from rq.job import Job

    webhooks_queue.empty()
    for job_id in webhooks_queue.scheduled_job_registry.get_job_ids():
        Job.fetch(job_id, connection=webhooks_queue.connection,
                  serializer=webhooks_queue.serializer).delete()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(minutes=5))


def test_an_interrupted_attempt_counts_and_the_last_one_gives_up(user, settings, receiver_for,
                                                                 webhooks_queue):
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [60]  # two attempts in all
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    _die_mid_send(WebhookDelivery.objects.get(task=task, attempt=1), webhooks_queue)

    assert len(reconcile(grace_seconds=30).deliveries_requeued) == 1
    first = WebhookDelivery.objects.get(task=task, attempt=1)
    assert first.status == Status.FAILED and first.error == webhooks.INTERRUPTED
    assert attempts(task) == [(1, Status.FAILED), (2, Status.PENDING)]

    _die_mid_send(WebhookDelivery.objects.get(task=task, attempt=2), webhooks_queue)
    reconcile(grace_seconds=30)
    assert attempts(task) == [(1, Status.FAILED), (2, Status.FAILED)]  # the last: given up
    assert WebhookDelivery.objects.get(task=task, attempt=2).next_retry_at is None
    assert reconcile(grace_seconds=30).deliveries_requeued == []
    assert attempts(task) == [(1, Status.FAILED), (2, Status.FAILED)]
    assert receiver.requests == []


def _hold_every_slot(connection, holder: str, *, alive: bool) -> None:
    key = f"{queue.WEBHOOK_SLOT_PREFIX}{queue.settings.QUICKBG_QUEUE}:0"
    connection.set(key, holder, ex=60)
    if alive:
        connection.set(queue.alive_key(holder), "1", ex=60)
    else:
        connection.delete(queue.alive_key(holder))


def test_an_image_worker_without_a_webhook_slot_leaves_deliveries_alone(
        user, settings, receiver_for, webhooks_queue, empty_queue):
    """QUICKBG_WEBHOOK_CONCURRENCY=1 and another live image worker holds the slot: this worker
    runs the image job and does not touch the delivery; once the holder is dead, it delivers."""
    settings.QUICKBG_WEBHOOK_CONCURRENCY = 1
    connection = empty_queue.connection
    receiver = receiver_for(user)
    hooked = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=hooked.pk)
    task = make_task(owner=user, model="no-such-model")  # fails at once, without the model
    task_enqueue(task=task)
    _hold_every_slot(connection, "another-worker", alive=True)

    call_command("run_worker", "--burst", "--no-warmup")
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert attempts(hooked) == [(1, Status.PENDING)]
    assert webhooks_queue.count == 1 and receiver.requests == []

    _hold_every_slot(connection, "another-worker", alive=False)  # it died holding the slot
    call_command("run_worker", "--burst", "--no-warmup")
    assert attempts(hooked) == [(1, Status.SUCCEEDED)]
    assert len(receiver.verified) == 1
    slot = f"{queue.WEBHOOK_SLOT_PREFIX}{queue.settings.QUICKBG_QUEUE}:0"
    assert connection.get(slot) is None  # released after the delivery
