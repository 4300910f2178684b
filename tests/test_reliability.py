"""Focused tests, one per reliability guarantee (the combined suite: test_fault_injection)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.config import Config as BotoConfig
from django.core.management import call_command
from PIL import Image
from rq.job import Job
from rq.serializers import JSONSerializer

from removal import storage
from removal.models import IdempotencyKey, Task, Upload
from removal.queue import get_queue
from removal.services.tasks import task_enqueue
from tests.factories import make_task, make_upload
from tests.helpers import free_port, named, subprocess_env
from tests.images import fixture_bytes, make_image

ROOT = Path(__file__).resolve().parent.parent


def stored_task(owner, data: bytes, **task_fields) -> Task:
    upload = make_upload(owner=owner)
    storage.write(upload.original_key, data)
    return make_task(upload=upload, **task_fields)


# --- retries -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_jobs_are_enqueued_with_exponential_retry_intervals(user, empty_queue):
    task = make_task(owner=user)
    task_enqueue(task=task)
    job = Job.fetch(Task.objects.get(pk=task.pk).rq_job_id, connection=empty_queue.connection,
                    serializer=JSONSerializer)
    assert job.retries_left == 3
    assert job.retry_intervals == [60, 120, 240]
    assert job.timeout == 300


@pytest.mark.django_db(transaction=True)
def test_transient_storage_failure_is_retried_then_fails_with_reason(user, s3, settings,
                                                                    run_worker):
    settings.QUICKBG_RETRY_DELAY = 0  # retry at once so the burst worker runs every attempt
    task = stored_task(user, make_image())
    task_enqueue(task=task)
    dead = f"http://127.0.0.1:{free_port()}"  # storage unreachable: connection refused
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"],
        "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": dead,
                    "client_config": BotoConfig(
                        retries={"max_attempts": 1}, connect_timeout=1)},
    }}
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.attempts == 4  # the first try and three retries
    assert task.error_message == (
        "Failed after 4 attempts: the storage service was temporarily unavailable"
    )


@pytest.mark.django_db(transaction=True)
def test_bad_input_fails_at_once_without_retry(user, run_worker, empty_queue):
    noisy = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(noisy, format="JPEG")
    corrupt = noisy.getvalue()[: len(noisy.getvalue()) // 2]  # header intact, pixels cut off
    task = stored_task(user, corrupt)
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.attempts == 1
    assert "truncated or corrupt" in task.error_message
    assert empty_queue.scheduled_job_registry.count == 0


# --- Redis loss and Redis down ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tasks_survive_flushall_through_the_reconciler(user, own_redis, client_for):
    client = client_for(user)
    ids = [client.post("/api/v1/uploads", {"file": named(make_image())},
                       format="multipart").json()["task_id"] for _ in range(3)]
    queue = get_queue()
    assert queue.count == 3
    queue.connection.flushall()
    assert queue.count == 0
    Task.objects.update(updated_at=Task.objects.first().created_at.replace(year=2020))
    call_command("reconcile_tasks", "--grace", "0")
    assert queue.count == 3
    assert sorted(queue.job_ids) == sorted(Task.objects.values_list("rq_job_id", flat=True))
    assert {str(job.args[0]) for job in queue.jobs} == set(ids)


@pytest.mark.django_db(transaction=True)
def test_redis_down_at_upload_time_is_202_and_reconciled_later(user, own_redis, client_for):
    client = client_for(user)
    own_redis.stop()
    response = client.post("/api/v1/uploads", {"file": named(make_image())}, format="multipart")
    assert response.status_code == 202, response.content
    task = Task.objects.get(pk=response.json()["task_id"])
    assert task.status == Task.Status.QUEUED
    own_redis.start()
    assert get_queue().count == 0
    call_command("reconcile_tasks", "--grace", "0")
    assert get_queue().job_ids == [Task.objects.get(pk=task.pk).rq_job_id]


@pytest.mark.django_db(transaction=True)
def test_reconciler_leaves_held_tasks_alone(user, own_redis):
    task = make_task(owner=user)
    task_enqueue(task=task)
    Task.objects.update(updated_at=task.created_at.replace(year=2020))
    job_id = Task.objects.get(pk=task.pk).rq_job_id
    call_command("reconcile_tasks", "--grace", "0")
    assert get_queue().job_ids == [job_id]  # still the same single job


# --- idempotency -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_idempotency_key_replays_the_first_response(user, client_for):
    client = client_for(user)
    data = make_image()
    first = client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert (Upload.objects.count(), Task.objects.count()) == (1, 1)
    other = client.post("/api/v1/uploads", {"file": named(make_image(color=(1, 2, 3)))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    assert Task.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_idempotency_keys_are_per_user_and_expire(user, other_user, client_for):
    data = make_image()
    mine = client_for(user).post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                                 HTTP_IDEMPOTENCY_KEY="k")
    theirs = client_for(other_user).post("/api/v1/uploads", {"file": named(data)},
                                         format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert mine.json()["task_id"] != theirs.json()["task_id"]
    IdempotencyKey.objects.update(created_at=mine_time_minus_a_day())
    later = client_for(user).post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                                  HTTP_IDEMPOTENCY_KEY="k")
    assert later.status_code == 202 and later.json()["task_id"] != mine.json()["task_id"]


def mine_time_minus_a_day():
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(hours=25)


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_request_frees_the_idempotency_key(user, client_for):
    client = client_for(user)
    bad = client.post("/api/v1/uploads", {"file": named(b"not an image")}, format="multipart",
                      HTTP_IDEMPOTENCY_KEY="retry-me")
    assert bad.status_code == 400
    assert IdempotencyKey.objects.count() == 0


# --- timeout and graceful shutdown (real model, real worker process) -------------------------


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_job_past_its_timeout_fails_and_frees_the_worker(user, settings, run_worker, empty_queue):
    settings.QUICKBG_JOB_TIMEOUT = 1  # one ISNet inference takes longer than this
    slow = stored_task(user, fixture_bytes("car-1.jpg"))
    task_enqueue(task=slow)
    settings.QUICKBG_JOB_TIMEOUT = 300
    quick = stored_task(user, fixture_bytes("car-1.jpg"))
    task_enqueue(task=quick)
    run_worker()
    slow.refresh_from_db()
    quick.refresh_from_db()
    assert slow.status == Task.Status.FAILED
    assert slow.error_message == "Processing timed out after 1 s"
    assert quick.status == Task.Status.COMPLETED  # the same worker went on to the next job


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_running_job_finish(user, tmp_path):
    task = stored_task(user, fixture_bytes("girl-1.jpg"))
    task_enqueue(task=task)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--name", f"term-{tmp_path.name}"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while Task.objects.get(pk=task.pk).status != Task.Status.PROCESSING:
        assert time.monotonic() < deadline, "worker never started the task"
        assert worker.poll() is None
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0
    task.refresh_from_db()
    assert task.status == Task.Status.COMPLETED


# --- worker death ------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_inference_hands_its_task_to_another(user, tmp_path):
    task = stored_task(user, fixture_bytes("car-1.jpg"))
    task_enqueue(task=task)
    env = subprocess_env() | {"QUICKBG_RECONCILE_INTERVAL": "2", "QUICKBG_RECONCILE_GRACE": "3",
                              "QUICKBG_ORT_THREADS": "1"}

    def worker(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", "run_worker", "--name", name],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    # Worker names are global in the shared Redis, and a SIGKILLed worker stays registered for
    # minutes: the name must be unique to this run, not just to this test (tmp_path.name is not).
    unique = f"{os.getpid()}-{tmp_path.name}"
    first = worker(f"doomed-{unique}")
    deadline = time.monotonic() + 120
    while Task.objects.get(pk=task.pk).status != Task.Status.PROCESSING:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # inside the model run
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = time.monotonic()
    second = worker(f"rescuer-{unique}")
    try:
        while Task.objects.get(pk=task.pk).status != Task.Status.COMPLETED:
            assert time.monotonic() - killed_at < 120, "not recovered within 2 minutes"
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(timeout=60)
    task.refresh_from_db()
    assert task.attempts == 2
    assert storage.exists(f"results/{task.pk}.png")


@pytest.mark.django_db(transaction=True)
def test_read_only_redis_at_upload_time_keeps_the_task_and_its_original(user, own_redis,
                                                                        client_for):
    queue = get_queue()
    queue.connection.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # read-only
    response = client_for(user).post("/api/v1/uploads", {"file": named(make_image())},
                                     format="multipart")
    assert response.status_code == 202, response.content
    task = Task.objects.select_related("upload").get(pk=response.json()["task_id"])
    assert task.status == Task.Status.QUEUED
    assert storage.exists(task.upload.original_key)
    queue.connection.execute_command("REPLICAOF", "NO", "ONE")
    call_command("reconcile_tasks", "--grace", "0")
    assert queue.job_ids == [Task.objects.get(pk=task.pk).rq_job_id]


@pytest.mark.django_db(transaction=True)
def test_retry_of_a_failed_task_gets_the_full_retry_budget(user, client_for):
    task = make_task(owner=user, status=Task.Status.FAILED, attempts=4,
                     error_message="Failed after 4 attempts: ...")
    response = client_for(user).post(f"/api/v1/tasks/{task.pk}/retry")
    assert response.status_code == 202
    task.refresh_from_db()
    assert (task.status, task.attempts) == (Task.Status.QUEUED, 0)
