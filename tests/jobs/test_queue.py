"""removal.queue: how a task's job is put on the RQ queue (JSON, not pickle; retry intervals and
timeout)."""

from __future__ import annotations

import json
import zlib

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import make_task

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_queue_stores_jobs_as_json_not_pickle(user, empty_queue):
    task = make_task(owner=user)
    task_enqueue(task=task)
    raw = empty_queue.connection.hget(Job.key_for(Task.objects.get(pk=task.pk).rq_job_id),
                                      "data")
    decoded = json.loads(zlib.decompress(raw))  # RQ compresses; JSON inside, not pickle
    assert decoded[0] == "removal.jobs.process_task"
    assert [str(task.pk)] in decoded


@pytest.mark.django_db(transaction=True)
def test_jobs_are_enqueued_with_exponential_retry_intervals(user, empty_queue):
    task = make_task(owner=user)
    task_enqueue(task=task)
    job = Job.fetch(Task.objects.get(pk=task.pk).rq_job_id, connection=empty_queue.connection,
                    serializer=JSONSerializer)
    assert job.retries_left == 3
    assert job.retry_intervals == [60, 120, 240]
    assert job.timeout == 300
