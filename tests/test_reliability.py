"""Focused tests, one per reliability guarantee (the combined suite: test_fault_injection)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
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
from tests.helpers import free_port, named, reap, subprocess_env
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


class FlakyS3:
    """A botocore ``before-call`` hook on the storage client: the first S3 calls fail the way a
    busy or flaky S3 does (connection reset, 503 SlowDown, 500 InternalError), the rest reach
    moto."""

    def __init__(self):
        self.calls: list[str] = []
        self.failures = [self._reset, self._answer(503, "SlowDown"),
                         self._answer(500, "InternalError")]

    def _reset(self, **_):
        from botocore.exceptions import ResponseStreamingError

        raise ResponseStreamingError(error=ConnectionResetError(104, "Connection reset by peer"))

    @staticmethod
    def _answer(status: int, code: str):
        from botocore.awsrequest import AWSResponse

        def answer(**_):
            http = AWSResponse("http://s3", status, {}, None)
            return http, {"Error": {"Code": code, "Message": code},
                          "ResponseMetadata": {"HTTPStatusCode": status}}
        return answer

    def __call__(self, model, **kwargs):
        self.calls.append(model.name)
        if len(self.calls) <= len(self.failures):
            return self.failures[len(self.calls) - 1](**kwargs)
        return None


@pytest.mark.django_db(transaction=True)
def test_transient_s3_errors_go_back_to_the_queue_and_the_task_completes(
        user, s3, settings, run_worker, monkeypatch):
    from django.core.files.storage import default_storage

    from removal import runner
    from tests.helpers import DiscModel

    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: DiscModel())
    settings.QUICKBG_RETRY_DELAY = 0  # retry at once so the burst worker runs every attempt
    task = stored_task(user, make_image())
    task_enqueue(task=task)
    flaky = FlakyS3()
    default_storage.connection.meta.client.meta.events.register("before-call.s3", flaky)
    run_worker()
    task.refresh_from_db()
    assert len(flaky.calls) > 3  # the three injected failures, then real calls to moto
    assert task.status == Task.Status.COMPLETED, task.error_message
    assert task.attempts == 4  # three transient failures, each sent back to the queue
    png = s3.get_object(Bucket=settings.AWS_STORAGE_BUCKET_NAME, Key=task.result_key)
    assert png["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"


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
def test_the_same_key_with_another_webhook_or_image_url_is_a_mismatch(user, client_for,
                                                                     settings):
    """Every field that changes the request is part of it: a second webhook_url or image_url
    under the same key is a 422, never a replay of the first answer."""
    from tests.helpers import LocalHTTPServer

    client = client_for(user)
    image = make_image()
    routes = {"/a.png": (200, {"Content-Type": "image/png"}, image),
              "/b.png": (200, {"Content-Type": "image/png"}, image)}
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        first = client.post("/api/v1/uploads", {"file": named(image),
                                                "webhook_url": server.url("/hook-1")},
                            format="multipart", HTTP_IDEMPOTENCY_KEY="hook-key")
        moved = client.post("/api/v1/uploads", {"file": named(image),
                                                "webhook_url": server.url("/hook-2")},
                            format="multipart", HTTP_IDEMPOTENCY_KEY="hook-key")
        by_url = client.post("/api/v1/uploads", {"image_url": server.url("/a.png")},
                             format="multipart", HTTP_IDEMPOTENCY_KEY="url-key")
        other_url = client.post("/api/v1/uploads", {"image_url": server.url("/b.png")},
                                format="multipart", HTTP_IDEMPOTENCY_KEY="url-key")
        fetched = [r["path"] for r in server.requests]
    assert first.status_code == 202 and by_url.status_code == 202
    for refused in (moved, other_url):
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "This Idempotency-Key was already used with a different request body"}
    assert fetched == ["/a.png"]  # the refused request fetched nothing
    assert Task.objects.count() == 2
    assert set(Task.objects.values_list("webhook_url", flat=True)) == {server.url("/hook-1"), ""}


@pytest.mark.django_db
def test_idempotency_records_past_their_window_are_purged(user):
    from django.utils import timezone

    from removal.services.retention import idempotency_keys_purge

    old = IdempotencyKey.objects.create(owner=user, key="old", request_hash="x")
    fresh = IdempotencyKey.objects.create(owner=user, key="fresh", request_hash="y")
    IdempotencyKey.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - IdempotencyKey.WINDOW - timedelta(minutes=1))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [fresh.pk]


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
        [sys.executable, "manage.py", "run_worker", "--name", f"term-{uuid.uuid4().hex[:12]}"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while Task.objects.get(pk=task.pk).status != Task.Status.PROCESSING:
            assert time.monotonic() < deadline, "worker never started the task"
            assert worker.poll() is None
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
    finally:
        reap(worker)
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
                                stderr=subprocess.DEVNULL, start_new_session=True)

    # Unique names: RQ refuses a name whose registration a SIGKILLed worker left in Redis.
    first = worker(f"doomed-{uuid.uuid4().hex[:12]}")
    second = None
    try:
        deadline = time.monotonic() + 120
        while Task.objects.get(pk=task.pk).status != Task.Status.PROCESSING:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # inside the model run
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = time.monotonic()
        second = worker(f"rescuer-{uuid.uuid4().hex[:12]}")
        while Task.objects.get(pk=task.pk).status != Task.Status.COMPLETED:
            assert time.monotonic() - killed_at < 120, "not recovered within 2 minutes"
            time.sleep(0.2)
    finally:
        reap(first, first_signal=signal.SIGKILL)
        if second is not None:
            reap(second, timeout=60)
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


# --- an abandoned Idempotency-Key (issue 17) ---------------------------------------------------

CRASH_MID_UPLOAD = """
import os, signal, sys
import django
django.setup()
from accounts.models import User
from removal.api import idempotency
owner = User.objects.get(pk=int(sys.argv[1]))
# The placeholder is committed, then the process dies before any answer is stored.
idempotency.replay_or_perform(owner=owner, key=sys.argv[2], request_hash=sys.argv[3],
                              perform=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


@pytest.mark.django_db(transaction=True)
def test_a_crashed_request_leaves_a_key_that_a_retry_takes_over_later(user, client_for,
                                                                       settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from removal.api.idempotency import request_hash
    from removal.pipeline.options import Options

    data = make_image()
    digest = request_hash({"file": SimpleUploadedFile("image.jpg", data),
                           "options": Options.parse({}).to_dict()})
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MID_UPLOAD, str(user.pk), "crash-key", digest],
        cwd=ROOT, env=subprocess_env(), capture_output=True, timeout=120,
        start_new_session=True,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    placeholder = IdempotencyKey.objects.get(owner=user, key="crash-key")
    assert placeholder.response_status is None

    client = client_for(user)

    def post():
        return client.post("/api/v1/uploads", {"file": named(data)}, format="multipart",
                           HTTP_IDEMPOTENCY_KEY="crash-key")

    fresh = post()  # the request might still be running: still a conflict
    assert fresh.status_code == 409
    assert fresh.json()["detail"] == "A request with this Idempotency-Key is still in progress"

    settings.QUICKBG_IDEMPOTENCY_PENDING_SECONDS = 120
    IdempotencyKey.objects.filter(pk=placeholder.pk).update(
        created_at=placeholder.created_at - timedelta(seconds=121))
    taken_over = post()
    assert taken_over.status_code == 202, taken_over.content
    task_id = taken_over.json()["task_id"]
    assert Task.objects.filter(pk=task_id, upload__owner=user).count() == 1
    replay = post()
    assert replay.status_code == 202 and replay.json()["task_id"] == task_id
    assert Task.objects.filter(upload__owner=user).count() == 1


# --- a hung job (issue 17) -------------------------------------------------------------------


def worker_logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in folder.glob("worker-*.log"))


@pytest.mark.django_db(transaction=True)
def test_a_job_hung_in_c_code_on_a_live_worker_is_recovered_or_failed(user, settings,
                                                                      tmp_path):
    from removal.reconcile import reconcile

    settings.QUICKBG_MAX_RETRIES = 1  # two attempts in all
    fresh = make_task(owner=user)  # its first attempt: recovered (requeued)
    last = make_task(owner=user, attempts=1)  # its last attempt: failed
    queue = get_queue()
    for task in (fresh, last):
        job_id = f"task-{task.pk}-hang"
        Task.objects.filter(pk=task.pk).update(rq_job_id=job_id)
        queue.enqueue_call(func="tests.hang_job.hang_task", args=(str(task.pk),),
                           job_id=job_id, timeout=10)
    env = subprocess_env() | {"QUICKBG_RECONCILE_INTERVAL": "0", "QUICKBG_MAX_RETRIES": "1"}
    workers = [
        subprocess.Popen([sys.executable, "manage.py", "run_worker", "--name",
                          f"hung-{n}-{uuid.uuid4().hex[:12]}"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / f"worker-{n}.log", "wb"),  # noqa: SIM115
                         start_new_session=True)
        for n in range(2)
    ]
    try:
        deadline = time.monotonic() + 90
        while Task.objects.filter(pk__in=[fresh.pk, last.pk],
                                  status=Task.Status.PROCESSING).count() < 2:
            assert time.monotonic() < deadline, "the workers never started the jobs"
            assert all(w.poll() is None for w in workers), worker_logs(tmp_path)
            time.sleep(0.2)
        time.sleep(4)
        # Alive, inside the timeout: held (the liveness keys are fresh).
        early = reconcile(grace_seconds=2)
        assert early.held >= 2 and not early.requeued and not early.failed
        # Past 10 s + 2 s, RQ's SIGALRM has not stopped them: both workers are still alive.
        time.sleep(10)
        assert all(w.poll() is None for w in workers), worker_logs(tmp_path)
        late = reconcile(grace_seconds=2)
    finally:
        for worker in workers:
            reap(worker, first_signal=signal.SIGKILL)
    assert late.requeued == [str(fresh.pk)]
    assert late.failed == [str(last.pk)]
    fresh.refresh_from_db()
    last.refresh_from_db()
    assert fresh.status == Task.Status.QUEUED and fresh.rq_job_id in queue.get_job_ids()
    assert (last.status, last.error_message) == (Task.Status.FAILED,
                                                 "Processing timed out after 10 s")


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_claim_records_nothing_and_announces_nothing(
        user, monkeypatch, empty_queue):
    """The reconciler took the task back while the model ran (a hung job): the old attempt's
    outcome is not recorded, no waiter is told, and no webhook event is sent from it."""
    from removal import jobs, queue, runner
    from removal.models import WebhookDelivery
    from tests.helpers import DiscModel

    task = stored_task(user, make_image(), webhook_url="http://127.0.0.1:9/hook")

    class TakenOver(DiscModel):
        def run(self, tensor, timeout=None):
            Task.objects.filter(pk=task.pk).update(status=Task.Status.QUEUED, claim_token=None)
            return super().run(tensor, timeout)

    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: TakenOver())
    assert jobs.process_task(str(task.pk)) == "skipped"
    task.refresh_from_db()
    assert task.status == Task.Status.QUEUED and task.finished_at is None
    assert not queue.wait_task_done(task.pk, timeout=0.5)
    assert not WebhookDelivery.objects.exists()
