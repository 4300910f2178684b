"""removal.worker: SIGTERM lets the running job finish, a worker killed mid-inference hands its
task to another (both with the real model), and the daily retention thread runs once a day."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from removal import storage
from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import stored_task
from tests.helpers import reap, subprocess_env
from tests.images import fixture_bytes
from tests.lifecycle import age, stored, stored_upload

ROOT = Path(__file__).resolve().parents[2]


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
def test_workers_run_retention_once_a_day_when_it_is_set(settings, empty_queue):
    import threading
    import time

    from removal.queue import RETENTION_LOCK
    from removal.worker import QuickBGWorker
    from tests.factories import make_user

    settings.QUICKBG_RETENTION_DAYS = 30
    lock = f"{RETENTION_LOCK}:{settings.QUICKBG_QUEUE}"
    redis = empty_queue.connection
    redis.delete(lock)
    owner = make_user()
    first = stored_upload(owner)
    age(first, 31)

    def run_loop_once(worker) -> None:
        thread = threading.Thread(target=worker._retention_loop)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and redis.get(lock) is None:
            time.sleep(0.05)
        worker._stop_threads.set()
        thread.join(20)
        assert not thread.is_alive()

    try:
        run_loop_once(QuickBGWorker([empty_queue], connection=redis))
        first.refresh_from_db()
        assert first.expired_at is not None and not stored(first.original_key)
        assert redis.ttl(lock) > 23 * 3600  # taken for a day

        second = stored_upload(owner)
        age(second, 31)
        run_loop_once(QuickBGWorker([empty_queue], connection=redis))  # same day: lock held
        second.refresh_from_db()
        assert second.expired_at is None and stored(second.original_key)
    finally:
        redis.delete(lock)
