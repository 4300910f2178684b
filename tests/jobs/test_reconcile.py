"""removal.reconcile: tasks no live job holds are recovered (Redis flushed, down or read-only at
upload time, a job hung in C code), held tasks are left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from removal import storage
from removal.models import Task
from removal.queue import get_queue
from removal.services.tasks import task_enqueue
from tests.factories import make_task
from tests.helpers import free_port, named, reap, subprocess_env
from tests.images import make_image

ROOT = Path(__file__).resolve().parents[2]


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
