"""``services.tasks.task_finished`` is the one owner of a task's end: every path that ends a
task (the job completing or failing it, the reconciler failing it, a reused result, deleting its
upload, retention) leads to exactly one announce and one webhook event per outcome, and a batch
is finished and announced once, when its last member ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from removal import jobs, queue, runner
from removal.errors import InvalidInput
from removal.models import Batch, Task, WebhookDelivery, WebhookEndpoint
from removal.pipeline.options import Options
from removal.reconcile import reconcile
from removal.services import retention, tasks, uploads, webhooks
from tests.factories import make_task, make_upload
from tests.services.test_result_reuse import IMAGE, earlier_result

pytestmark = pytest.mark.django_db(transaction=True)

Status = Task.Status
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def announced(monkeypatch):
    """The task ids ``queue.announce_task_done`` was called with, in order."""
    calls: list[str] = []
    real = queue.announce_task_done

    def record(task_id):
        calls.append(str(task_id))
        real(task_id)

    monkeypatch.setattr(queue, "announce_task_done", record)
    return calls


@pytest.fixture
def hooked(user, webhooks_queue):
    """``user`` with a standing endpoint: every event of theirs is one delivery row."""
    WebhookEndpoint.objects.create(owner=user, url=HOOK)
    return user


def events(event_type: str) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(event_type=event_type))


def queued(owner, **fields) -> Task:
    return make_task(upload=make_upload(owner=owner), **fields)


def run_job(task: Task, monkeypatch, *, raises: Exception | None = None) -> str:
    def run(claim):
        if raises is not None:
            raise raises
        return runner.Outcome(result_key=f"results/{claim.task.pk}.png", processing_time=0.5)

    monkeypatch.setattr(runner, "run_task", run)
    return jobs.process_task(str(task.pk))


def test_a_job_completing_a_task_announces_it_and_emits_one_event(hooked, announced,
                                                                  monkeypatch):
    task = queued(hooked)
    assert run_job(task, monkeypatch) == "completed"
    assert announced == [str(task.pk)]
    [event] = events("task.completed")
    assert event.task_id == task.pk and event.data["status"] == "completed"


def test_a_job_failing_a_task_announces_it_and_emits_one_event(hooked, announced, monkeypatch):
    task = queued(hooked)
    assert run_job(task, monkeypatch, raises=InvalidInput("not an image")) == "failed"
    assert announced == [str(task.pk)]
    [event] = events("task.failed")
    assert event.task_id == task.pk and event.data["error_message"] == "not an image"


def test_a_job_that_lost_its_claim_announces_nothing(hooked, announced, monkeypatch):
    task = queued(hooked)

    def run(claim):  # the reconciler took the task over meanwhile
        Task.objects.filter(pk=claim.task.pk).update(claim_token=None)
        return runner.Outcome(result_key="results/x.png", processing_time=0.5)

    monkeypatch.setattr(runner, "run_task", run)
    assert jobs.process_task(str(task.pk)) == "skipped"
    assert announced == [] and WebhookDelivery.objects.count() == 0


def test_the_reconciler_failing_a_task_announces_it_and_emits_one_event(hooked, announced,
                                                                        settings):
    task = queued(hooked, status=Status.PROCESSING, attempts=queue.max_attempts(),
                  rq_job_id="task-gone-job")
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    report = reconcile(grace_seconds=30)
    assert report.failed == [str(task.pk)]
    assert announced == [str(task.pk)]
    [event] = events("task.failed")
    assert event.task_id == task.pk
    reconcile(grace_seconds=30)  # a second pass finds nothing more to end
    assert announced == [str(task.pk)] and len(events("task.failed")) == 1


def test_a_reused_result_announces_and_emits_once_after_commit(hooked, announced):
    earlier_result(hooked)
    task = uploads.upload_create_from_bytes(owner=hooked, data=IMAGE, filename="again.jpg",
                                            options=Options.parse({}).to_dict())
    assert task.cached and task.status == Status.COMPLETED
    assert announced == [str(task.pk)]
    [event] = events("task.completed")
    assert event.task_id == task.pk and event.data["cached"] is True


def test_the_last_batch_member_to_end_finishes_the_batch_once(hooked, announced, monkeypatch):
    batch = Batch.objects.create(owner=hooked, model="isnet-general-use", size=2)
    done, failing = queued(hooked, batch=batch), queued(hooked, batch=batch)
    assert run_job(done, monkeypatch) == "completed"
    assert events("batch.completed") == []  # one member still queued
    assert run_job(failing, monkeypatch, raises=InvalidInput("bad")) == "failed"
    [finished] = events("batch.completed")
    assert finished.data["counts"][Status.COMPLETED] == 1
    assert finished.data["counts"][Status.FAILED] == 1
    assert sorted(announced) == sorted([str(done.pk), str(failing.pk)])
    tasks.task_finished(tasks=[done, failing])  # ending again changes nothing
    assert len(events("batch.completed")) == 1 and len(events("task.completed")) == 1


def test_deleting_the_last_unfinished_member_finishes_the_batch_without_a_task_event(
        hooked, announced, monkeypatch):
    batch = Batch.objects.create(owner=hooked, model="isnet-general-use", size=2)
    done, waiting = queued(hooked, batch=batch), queued(hooked, batch=batch)
    run_job(done, monkeypatch)
    announced.clear()
    assert uploads.upload_delete(upload=waiting.upload) == []
    [finished] = events("batch.completed")
    assert finished.data["count"] == 2
    assert announced == []  # a deleted task has no outcome to announce or emit
    assert len(events("task.completed")) == 1 and events("task.failed") == []


def test_retention_expiring_a_task_emits_nothing_again(hooked, announced, monkeypatch):
    task = queued(hooked)
    run_job(task, monkeypatch)
    announced.clear()
    report = retention.uploads_expire(cutoff=timezone.now() + timedelta(seconds=1))
    assert report.tasks == 1
    assert Task.objects.get(pk=task.pk).status == Status.EXPIRED
    assert announced == [] and len(events("task.completed")) == 1


def test_a_failing_follow_up_does_not_stop_the_others(hooked, announced, monkeypatch):
    batch = Batch.objects.create(owner=hooked, model="isnet-general-use", size=1)
    task = queued(hooked, batch=batch)

    def broken(**kwargs):
        raise RuntimeError("event store down")

    monkeypatch.setattr(webhooks, "task_event_emit", broken)
    assert run_job(task, monkeypatch) == "completed"  # the outcome stands
    assert announced == [str(task.pk)]
    assert events("task.completed") == [] and len(events("batch.completed")) == 1
    assert Batch.objects.get(pk=batch.pk).completed_event_at is not None
