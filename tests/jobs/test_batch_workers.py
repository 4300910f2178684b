"""Batches with real workers: fair scheduling, batch.completed once, recovery on the batch queue."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image

from removal import queue, storage
from removal.models import Batch, Task
from removal.services import batches as batch_services
from tests.helpers import deliver_all, named, subprocess_env
from tests.images import fixture_bytes, make_image

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ("animal-2.jpg", "car-1.jpg", "cloth-1.jpg", "girl-1.jpg")


def crops(count: int) -> list[tuple[bytes, str]]:
    """``count`` 300x200 JPEG crops of the shared photos (small, so the model runs fast)."""
    sources = [Image.open(io.BytesIO(fixture_bytes(name))).convert("RGB") for name in FIXTURES]
    out = []
    for n in range(count):
        image = sources[n % len(sources)]
        left = (n * 37) % max(1, image.width - 300)
        buffer = io.BytesIO()
        image.crop((left, 0, left + 300, 200)).save(buffer, "JPEG", quality=85)
        out.append((buffer.getvalue(), f"crop-{n}.jpg"))
    return out


def post_batch(client, files):
    return client.post("/api/v1/batches",
                       {"files": [named(data, name) for data, name in files]},
                       format="multipart")


def start_worker(name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--name", name], cwd=ROOT,
        env=subprocess_env() | {"QUICKBG_ORT_THREADS": "2"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )


def reap(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_single_upload_starts_within_one_job_behind_another_users_100_image_batch(
    user, other_user, client_for, tmp_path
):
    batch = post_batch(client_for(other_user), crops(100))
    assert batch.status_code == 202, batch.content
    batch_id = batch.json()["batch_id"]
    # Unique per run: a SIGKILLed worker stays registered in Redis for minutes.
    worker = start_worker(f"fair-{tmp_path.name}-{os.getpid()}")
    try:
        deadline = time.monotonic() + 180
        # Let the worker get going on the batch (a couple of members done).
        while Task.objects.filter(batch_id=batch_id, status=Task.Status.COMPLETED).count() < 2:
            assert time.monotonic() < deadline, "the worker never processed the batch"
            assert worker.poll() is None, "the worker died"
            time.sleep(0.1)
        single = client_for(user).post(
            "/api/v1/uploads", {"file": named(crops(1)[0][0], "mine.jpg")}, format="multipart")
        assert single.status_code == 202
        submitted = Task.objects.get(pk=single.json()["task_id"]).created_at
        task_id = single.json()["task_id"]
        while Task.objects.get(pk=task_id).status != Task.Status.COMPLETED:
            assert time.monotonic() < deadline, "the single upload never finished"
            time.sleep(0.1)
    finally:
        reap(worker)
    mine = Task.objects.get(pk=task_id)
    done = Task.objects.filter(batch_id=batch_id, status=Task.Status.COMPLETED)
    job_time = max(done.values_list("processing_time", flat=True))
    wait = (mine.started_at - submitted).total_seconds()
    # Only the batch job already running when it arrived may start before it: none after.
    started_between = Task.objects.filter(
        batch_id=batch_id, started_at__gt=submitted, started_at__lt=mine.started_at).count()
    assert started_between == 0
    assert wait <= job_time + 1.0, (wait, job_time)
    assert Task.objects.filter(batch_id=batch_id, status=Task.Status.QUEUED).count() > 50


@pytest.mark.django_db(transaction=True)
def test_last_member_fires_one_signed_batch_completed(user, client_for, run_worker, receiver_for,
                                                      webhooks_queue):
    receiver = receiver_for(user)
    response = client_for(user).post(
        "/api/v1/batches", {"files": [named(make_image("JPEG", (60, 60)), f"{n}.jpg")
                                      for n in range(3)],
                            "webhook_url": receiver.url()},
        format="multipart")
    assert response.status_code == 202, response.content
    batch = Batch.objects.get(pk=response.json()["batch_id"])
    assert batch.webhook_url == receiver.url()
    for task in Task.objects.filter(batch=batch).select_related("upload"):
        storage.delete_quietly(task.upload.original_key)  # each member fails fast, no model
    assert queue.get_batch_queue().count == 3
    run_worker()  # the members, then (same worker, lower queue) the webhook delivery
    deliver_all()
    assert set(Task.objects.filter(batch=batch).values_list("status", flat=True)) == {"failed"}
    batch_events = [p for p in receiver.verified if p["type"] == "batch.completed"]
    assert len(batch_events) == 1  # verified with the user's secret (standardwebhooks)
    assert batch_events[0]["data"]["batch_id"] == str(batch.pk)
    assert batch_events[0]["data"]["status"] == "failed"
    assert batch_events[0]["data"]["counts"]["failed"] == 3
    assert Batch.objects.get(pk=batch.pk).completed_event_at is not None
    assert batch_services.batch_member_finished(batch_id=batch.pk) is False  # fires once
    deliver_all()
    assert len([p for p in receiver.verified if p["type"] == "batch.completed"]) == 1


def test_a_batch_with_a_refused_webhook_url_is_400_and_creates_nothing(user, client_for, db):
    response = client_for(user).post(
        "/api/v1/batches", {"files": [named(make_image("JPEG", (60, 60)), "a.jpg")],
                            "webhook_url": "http://127.0.0.2:9/hook"},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("webhook_url:")
    assert not Batch.objects.exists() and not Task.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_lost_batch_job_is_recovered_onto_the_batch_queue(user, client_for):
    response = client_for(user).post(
        "/api/v1/batches", {"files": [named(make_image("JPEG", (60, 60)), "a.jpg")]},
        format="multipart")
    task = Task.objects.get(pk=response.json()["task_ids"][0])
    batch_queue = queue.get_batch_queue()
    interactive = queue.get_queue()
    assert batch_queue.job_ids == [task.rq_job_id]
    call_command("reconcile_tasks", "--grace", "0")  # held: nothing to do
    assert batch_queue.job_ids == [task.rq_job_id]
    batch_queue.empty()  # Redis lost the job
    call_command("reconcile_tasks", "--grace", "0")
    task.refresh_from_db()
    assert batch_queue.job_ids == [task.rq_job_id]
    assert interactive.count == 0


def _batch_of(user, client_for, count: int, receiver) -> Batch:
    response = client_for(user).post(
        "/api/v1/batches", {"files": [named(make_image("JPEG", (60, 60)), f"{n}.jpg")
                                      for n in range(count)],
                            "webhook_url": receiver.url()},
        format="multipart")
    assert response.status_code == 202, response.content
    return Batch.objects.get(pk=response.json()["batch_id"])


@pytest.mark.django_db(transaction=True)
def test_deleting_the_last_unfinished_members_upload_finishes_and_announces_the_batch(
        user, client_for, run_worker, receiver_for, webhooks_queue):
    receiver = receiver_for(user)
    batch = _batch_of(user, client_for, 2, receiver)
    first, last = Task.objects.filter(batch=batch).select_related("upload").order_by("pk")
    storage.delete_quietly(first.upload.original_key)  # fails fast, without the model
    queue.get_batch_queue().remove(last.rq_job_id)
    run_worker()  # only the first member: the batch still has one queued
    assert Batch.objects.get(pk=batch.pk).completed_event_at is None

    deleted = client_for(user).delete(f"/api/v1/uploads/{last.upload_id}")
    assert deleted.status_code == 204
    assert Batch.objects.get(pk=batch.pk).completed_event_at is not None
    deliver_all()
    [event] = [p for p in receiver.verified if p["type"] == "batch.completed"]
    assert event["data"]["batch_id"] == str(batch.pk) and event["data"]["counts"]["failed"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_reconciler_finishes_a_batch_whose_members_ended_without_finishing_it(
        user, client_for, receiver_for, webhooks_queue, empty_queue):
    """Members that ended on a path that skipped the batch's finish (a cancelled job, an
    error swallowed after the outcome was recorded): the reconciler's sweep announces it once."""
    from datetime import timedelta

    from django.utils import timezone

    from removal.reconcile import reconcile

    receiver = receiver_for(user)
    batch = _batch_of(user, client_for, 2, receiver)
    queue.get_batch_queue().empty()
    Task.objects.filter(batch=batch).update(status=Task.Status.FAILED, error_message="cancelled")
    Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    assert reconcile(grace_seconds=30).batches_finished == [str(batch.pk)]
    assert reconcile(grace_seconds=30).batches_finished == []  # announced once
    deliver_all()
    events = [p for p in receiver.verified if p["type"] == "batch.completed"]
    assert len(events) == 1 and events[0]["data"]["status"] == "failed"
