"""Webhooks: standing endpoints, the signing secret, signed deliveries by a real worker, retries,
give-up, recovery of a lost delivery, the admin's resend.

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

from removal import storage
from removal.models import Task, WebhookDelivery
from removal.reconcile import reconcile
from removal.services import webhooks
from tests.factories import make_task, make_upload, make_user
from tests.helpers import LocalHTTPServer, deliver_all
from tests.images import make_image

Status = WebhookDelivery.Status


def completed_task(owner, **fields) -> Task:
    upload = make_upload(owner=owner)
    task = make_task(upload=upload, status=Task.Status.COMPLETED, progress=100,
                     finished_at=timezone.now(), **fields)
    key = storage.write(storage.result_key(task_id=task.pk), b"\x89PNG result bytes")
    Task.objects.filter(pk=task.pk).update(result_key=key)
    task.refresh_from_db()
    return task


# --- endpoints and the secret (API) ------------------------------------------------------------


@pytest.mark.django_db
def test_endpoints_are_created_listed_and_deleted_per_user(user, other_user, client_for,
                                                           settings):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.1:9"]
    mine, theirs = client_for(user), client_for(other_user)
    created = mine.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"] == "http://127.0.0.1:9/hook" and set(body) == {"id", "url", "created_at"}
    assert [e["id"] for e in mine.get("/api/v1/webhooks").json()] == [body["id"]]
    assert theirs.get("/api/v1/webhooks").json() == []
    assert theirs.delete(f"/api/v1/webhooks/{body['id']}").status_code == 404
    again = mine.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert again.status_code == 400 and "already registered" in again.json()["detail"]
    assert mine.delete(f"/api/v1/webhooks/{body['id']}").status_code == 204
    assert mine.get("/api/v1/webhooks").json() == []


@pytest.mark.django_db
@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.2:8080/hook", "resolves to a loopback address"),
    ("http://169.254.169.254/hook", "link-local"),
    ("ftp://example.com/hook", "Only http and https"),
    ("http://user:pw@example.com/hook", "credentials"),
])
def test_endpoint_with_a_refused_url_is_400(user, client_for, url, message, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: pytest.fail("connection attempted"))
    response = client_for(user).post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db
def test_endpoint_count_is_limited(user, client_for, settings):
    settings.QUICKBG_WEBHOOK_MAX_ENDPOINTS = 2
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.0/8"]
    client = client_for(user)
    for n in range(2):
        assert client.post("/api/v1/webhooks", {"url": f"http://127.0.0.1:9/{n}"},
                           format="json").status_code == 201
    third = client.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/x"}, format="json")
    assert third.status_code == 400 and "limit" in third.json()["detail"]


@pytest.mark.django_db
def test_secret_is_per_user_and_rotates(user, other_user, client_for):
    mine = client_for(user)
    first = mine.get("/api/v1/webhooks/secret").json()["secret"]
    assert first.startswith("whsec_") and len(first) > 40
    assert mine.get("/api/v1/webhooks/secret").json()["secret"] == first
    assert client_for(other_user).get("/api/v1/webhooks/secret").json()["secret"] != first
    rotated = mine.post("/api/v1/webhooks/secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (first, None)
    assert rotated.json()["rotated_at"] is not None
    assert mine.get("/api/v1/webhooks/secret").json()["secret"] == rotated.json()["secret"]


@pytest.mark.django_db
def test_after_rotation_both_secrets_verify_for_a_grace_period(user):
    old = webhooks.secret_get(owner=user).secret
    new = webhooks.secret_rotate(owner=user)
    now = timezone.now()
    header = webhooks.sign(secret=new, message_id="msg_1", timestamp=now, body="{}")
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": header}
    assert len(header.split(" ")) == 2
    for secret in (old, new.secret):
        Webhook(secret).verify("{}", headers)
    WebhookSecretModel = type(new)
    WebhookSecretModel.objects.filter(pk=new.pk).update(
        rotated_at=now - webhooks.ROTATION_GRACE - timedelta(seconds=1))
    new.refresh_from_db()
    header = webhooks.sign(secret=new, message_id="msg_1", timestamp=now, body="{}")
    assert len(header.split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify("{}", {**headers, "webhook-signature": header})


def test_default_retry_schedule_first_within_30s_growing_over_a_day():
    from django.conf import settings

    delays = settings.QUICKBG_WEBHOOK_RETRY_DELAYS
    assert delays[0] <= 30
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:], strict=False))
    assert sum(delays) >= 24 * 3600


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
def test_admin_lists_deliveries_and_resends(user, settings, receiver_for, webhooks_queue,
                                            client):
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    deliver_all()
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get("/admin/removal/webhookdelivery/")
    assert page.status_code == 200 and receiver.url().encode() in page.content
    first = WebhookDelivery.objects.get(task=task)
    detail = client.get(f"/admin/removal/webhookdelivery/{first.pk}/change/")
    assert detail.status_code == 200 and first.message_id.encode() in detail.content
    response = client.post("/admin/removal/webhookdelivery/", {
        "action": "resend", "_selected_action": [str(first.pk)]})
    assert response.status_code == 302
    deliver_all()
    resent = WebhookDelivery.objects.get(task=task, attempt=2)
    assert resent.status == Status.SUCCEEDED and resent.message_id == first.message_id
    assert len(receiver.verified) == 2


@pytest.mark.django_db
def test_upload_with_a_refused_webhook_url_is_400_and_creates_nothing(user, client_for):
    from tests.helpers import named

    response = client_for(user).post("/api/v1/uploads", {
        "file": named(make_image(), "a.jpg"), "webhook_url": "http://10.0.0.1/hook"},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("webhook_url: ")
    assert "'10.0.0.1' resolves to a private address" in response.json()["detail"]
    assert Task.objects.count() == 0


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_real_worker_image_url_webhook_and_reuse(user, client_for, settings, receiver_for,
                                                 run_worker, empty_queue, webhooks_queue):
    """The whole of issue 12 parts 3-5 through the real service: an image URL from a local
    server, the real model in a real worker (which also drains the webhooks queue), a signed
    task.completed event, then the same image again: reused at once, with its own event."""
    import io

    from PIL import Image

    from tests.images import fixture_bytes

    buffer = io.BytesIO()
    Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").crop(
        (0, 0, 300, 200)).save(buffer, "JPEG")
    receiver = receiver_for(user)
    with LocalHTTPServer("127.0.0.1", {"/car.jpg": (200, {}, buffer.getvalue())}) as images:
        settings.QUICKBG_FETCH_ALLOW = [*settings.QUICKBG_FETCH_ALLOW,
                                        f"127.0.0.1:{images.port}"]
        client = client_for(user)
        first = client.post("/api/v1/uploads", {"image_url": images.url("/car.jpg"),
                                                "webhook_url": receiver.url()}, format="json")
        assert first.status_code == 202 and first.json()["status"] == "queued"
        run_worker()
        second = client.post("/api/v1/uploads", {"image_url": images.url("/car.jpg"),
                                                 "webhook_url": receiver.url()}, format="json")
    assert second.json()["status"] == "completed"
    assert empty_queue.count == 0
    deliver_all()

    done = client.get(f"/api/v1/tasks/{first.json()['task_id']}").json()
    cached = client.get(f"/api/v1/tasks/{second.json()['task_id']}").json()
    assert done["status"] == "completed" and done["cached"] is False
    assert done["metrics"]["model_sha256"] == modelstore_sha()
    assert cached["cached"] is True and cached["processing_time"] == 0.0
    first_png = storage.read(Task.objects.get(pk=done["task_id"]).result_key)
    assert storage.read(Task.objects.get(pk=cached["task_id"]).result_key) == first_png
    assert [(p["type"], p["data"]["task_id"], p["data"]["cached"]) for p in receiver.verified] \
        == [("task.completed", done["task_id"], False),
            ("task.completed", cached["task_id"], True)]
    link = receiver.verified[0]["data"]["presigned_url"].removeprefix(settings.QUICKBG_PUBLIC_URL)
    download = client.get(link)
    assert download.status_code == 200 and b"".join(download.streaming_content) == first_png


def modelstore_sha() -> str:
    from removal import modelstore

    return modelstore.MODELS[modelstore.DEFAULT_MODEL].sha256


@pytest.mark.django_db(transaction=True)
def test_deleting_an_endpoint_cancels_its_pending_retries(user, client_for, settings,
                                                          receiver_for, webhooks_queue):
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [1]
    receiver = receiver_for(user, answers=(500,))
    client = client_for(user)
    endpoint = client.post("/api/v1/webhooks", {"url": receiver.url()}, format="json").json()
    webhooks.task_event_emit(task_id=completed_task(user).pk)
    deliver_all()
    retry = WebhookDelivery.objects.get(attempt=2)
    assert retry.status == Status.PENDING
    assert client.delete(f"/api/v1/webhooks/{endpoint['id']}").status_code == 204
    retry.refresh_from_db()
    assert retry.status == Status.FAILED and retry.error == "The webhook endpoint was deleted"
    time.sleep(1.2)
    deliver_all()  # the scheduled job runs, finds nothing pending, sends nothing
    assert len(receiver.requests) == 1


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
