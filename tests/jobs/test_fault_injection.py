"""Fault injection: real worker processes, a private Redis, the real PostgreSQL and real model.

N tasks go in (``QUICKBG_FAULT_TASKS``, default 30). While they run, the test SIGKILLs a worker
mid-inference several times, restarts Redis with its data lost once, and cuts every database
connection of the workers once. Killed workers are restarted, as a process manager would.
Every task must end ``completed`` with exactly one result object, and the test prints one line:
tasks, kills, Redis restarts, lost, duplicates, max recovery seconds.

It uses the real ISNet model on small photos (one inference per task either way), so no stand-in
model is needed.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count
from rq.job import Job
from rq.serializers import JSONSerializer

from removal.models import Task
from removal.queue import get_queue
from tests.helpers import reap, subprocess_env
from tests.images import fixture_bytes

ROOT = Path(__file__).resolve().parents[2]
N_TASKS = int(os.environ.get("QUICKBG_FAULT_TASKS", "30"))
N_WORKERS = 2
KILLS = 3
TIME_LIMIT = 900

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


class Workers:
    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.generation = 0

    def start(self, slot: int) -> None:
        self.generation += 1
        name = f"fault-{os.getpid()}-{slot}-{self.generation}"
        self.procs[name] = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--name", name],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.log_dir / f"{name}.log", "wb"),  # noqa: SIM115 - closed by exit
            start_new_session=True,
        )

    def keep_running(self) -> None:
        alive = {name: proc for name, proc in self.procs.items() if proc.poll() is None}
        missing = N_WORKERS - len(alive)
        self.procs = alive
        for slot in range(missing):
            self.start(slot)

    def kill(self, name: str) -> bool:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return False
        reap(proc, first_signal=signal.SIGKILL)
        return True

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            reap(proc, timeout=60)  # its group SIGKILLed after the graceful stop


def upload_all(client) -> list[str]:
    photos = ["girl-1.jpg", "animal-2.jpg", "car-1.jpg"]
    ids = []
    for n in range(N_TASKS):
        data = io.BytesIO(fixture_bytes(photos[n % len(photos)]))
        data.name = photos[n % len(photos)]
        response = client.post("/api/v1/uploads", {"file": data}, format="multipart")
        assert response.status_code == 202, response.content
        ids.append(response.json()["task_id"])
    return ids


def worker_holding(task: Task, redis) -> str | None:
    try:
        return Job.fetch(task.rq_job_id, connection=redis, serializer=JSONSerializer).worker_name
    except Exception:  # noqa: BLE001 - the job may be gone already
        return None


def cut_database_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_no_task_is_lost_through_kills_redis_loss_and_database_cuts(
    user, client_for, own_redis, settings, tmp_path
):
    settings.QUICKBG_MAX_QUEUED_TASKS = N_TASKS
    media = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(media)},
    }}
    env = subprocess_env() | {
        "REDIS_URL": own_redis.url,
        "QUICKBG_ORT_THREADS": "1",
        "QUICKBG_RECONCILE_INTERVAL": "2",
        "QUICKBG_RECONCILE_GRACE": "3",
        "QUICKBG_RETRY_DELAY": "1",
    }
    ids = upload_all(client_for(user))
    redis = get_queue().connection
    workers = Workers(env, tmp_path)
    kills, redis_restarts, db_cuts = [], 0, 0  # kills: (task id, killed at)
    recovery: dict[str, float] = {}
    started = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - started
            assert elapsed < TIME_LIMIT, f"not done after {TIME_LIMIT} s: " + str(
                dict(Task.objects.values_list("status").annotate(n=Count("id")))
            )
            workers.keep_running()
            done = Task.objects.filter(status=Task.Status.COMPLETED).count()
            for task_id, killed_at in kills:
                if task_id not in recovery and Task.objects.filter(
                        pk=task_id, status=Task.Status.COMPLETED).exists():
                    recovery[task_id] = time.monotonic() - killed_at
            if done == N_TASKS:
                break
            # SIGKILL a worker in the middle of an inference, KILLS times, spread over the run.
            if len(kills) < KILLS and done >= len(kills) * N_TASKS // (KILLS + 2) + 1:
                busy = Task.objects.filter(status=Task.Status.PROCESSING).first()
                if busy is not None and busy.pk not in {k[0] for k in kills}:
                    time.sleep(0.5)  # into the model run
                    name = worker_holding(busy, redis)
                    if name and workers.kill(name):
                        kills.append((str(busy.pk), time.monotonic()))
            # Lose everything in Redis once, about half way.
            if redis_restarts == 0 and done >= N_TASKS // 2:
                own_redis.restart_empty()
                redis_restarts += 1
            # Cut the workers' database connections once, at two thirds.
            if db_cuts == 0 and done >= 2 * N_TASKS // 3:
                cut_database_connections()
                db_cuts += 1
            time.sleep(0.2)
    finally:
        workers.stop()

    tasks = Task.objects.filter(pk__in=ids)
    lost = tasks.exclude(status=Task.Status.COMPLETED).count()
    _, results = default_storage.listdir("results")
    duplicates = len(results) - len(set(results)) + len(
        [name for name in results if name.rsplit(".", 1)[0] not in set(ids)]
    )
    max_recovery = max(recovery.values(), default=0.0)
    print("\nrecovery seconds per kill:", {k: round(v, 1) for k, v in recovery.items()},
          "worker logs:", tmp_path)
    print(
        f"\nfault suite: tasks={N_TASKS} kills={len(kills)} redis_restarts={redis_restarts} "
        f"db_cuts={db_cuts} lost={lost} duplicates={duplicates} "
        f"max_recovery_seconds={max_recovery:.1f} total_seconds={time.monotonic() - started:.0f}"
    )
    assert lost == 0
    assert duplicates == 0
    assert sorted(name.rsplit(".", 1)[0] for name in results) == sorted(ids)
    assert len(kills) == KILLS and redis_restarts == 1 and db_cuts == 1
    assert set(recovery) == {task_id for task_id, _ in kills}
    assert max_recovery <= 120
    assert all(task.result_key == f"results/{task.pk}.png" for task in tasks)
