"""The reconciler reads each task's RQ job from Redis once per pass, and still tells a hung job
(started on a live worker, past its timeout) from a held or lost one."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rq.job import Job, JobStatus

from removal import queue
from removal.models import Task
from removal.reconcile import reconcile
from tests.factories import make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def fetches(monkeypatch):
    """The job ids ``Job.fetch`` was asked for."""
    asked: list[str] = []
    real = Job.fetch

    def fetch(job_id, *args, **kwargs):
        asked.append(job_id)
        return real(job_id, *args, **kwargs)

    monkeypatch.setattr(Job, "fetch", fetch)
    return asked


def started_job(task: Task, empty_queue, *, started_ago: timedelta, timeout: int = 60) -> Job:
    """``task``'s job as a live worker leaves it while it runs: started, its liveness key set."""
    worker = f"h3-fetch-{uuid.uuid4().hex[:12]}"
    job = Job.create("removal.jobs.process_task", args=[str(task.pk)], id=task.rq_job_id,
                     connection=empty_queue.connection, serializer=empty_queue.serializer,
                     timeout=timeout)
    job.set_status(JobStatus.STARTED, pipeline=None)
    job.started_at = timezone.now() - started_ago
    job.worker_name = worker
    job.save()
    empty_queue.connection.set(queue.alive_key(worker), "1", ex=60)
    return job


def processing(user, **fields) -> Task:
    task = make_task(owner=user, status=Task.Status.PROCESSING,
                     rq_job_id=f"task-h3-{uuid.uuid4().hex[:8]}", **fields)
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    return task


def test_a_hung_job_is_fetched_once_and_its_task_fails_with_the_timeout(user, empty_queue,
                                                                          fetches):
    task = processing(user, attempts=queue.max_attempts())
    job = started_job(task, empty_queue, started_ago=timedelta(minutes=10), timeout=60)
    report = reconcile(grace_seconds=30)
    assert report.failed == [str(task.pk)]
    assert fetches.count(job.id) == 1
    assert Task.objects.get(pk=task.pk).error_message == "Processing timed out after 60 s"


def test_a_running_job_is_fetched_once_and_held(user, empty_queue, fetches):
    task = processing(user, attempts=1)
    job = started_job(task, empty_queue, started_ago=timedelta(seconds=5), timeout=600)
    report = reconcile(grace_seconds=30)
    assert report.held == 1 and report.failed == report.requeued == []
    assert fetches.count(job.id) == 1
    assert Task.objects.get(pk=task.pk).status == Task.Status.PROCESSING


def test_a_lost_job_is_fetched_once_and_its_task_requeued(user, empty_queue, fetches):
    task = processing(user, attempts=1)
    report = reconcile(grace_seconds=30)
    assert report.requeued == [str(task.pk)]
    assert fetches.count(task.rq_job_id) == 1  # asked, and gone
