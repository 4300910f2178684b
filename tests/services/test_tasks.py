"""services.tasks: claims, guarded state changes, recovery, retry and reprocess."""

from __future__ import annotations

import pytest

from removal.errors import Conflict, TooManyTasks
from removal.models import Task
from removal.services.tasks import (
    check_task_quota,
    task_claim,
    task_complete,
    task_fail,
    task_recover,
    task_reprocess,
    task_retry,
    task_set_progress,
)
from tests.factories import make_task, make_upload

Status = Task.Status


# --- one effective result --------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_attempt_that_claimed_may_complete(user):
    task = make_task(owner=user)
    first = task_claim(task_id=task.pk)
    assert task_claim(task_id=task.pk) is None  # already taken
    # The first worker is presumed dead; the task is recovered and claimed again.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("removal.services.tasks.task_enqueue", lambda task, at_front=False: "job")
        assert task_recover(task_id=task.pk, status="processing", attempts=1) == "requeued"
    second = task_claim(task_id=task.pk)
    assert (first.attempt, second.attempt) == (1, 2)
    assert task_complete(claim=first, result_key="results/x.png", processing_time=1,
                         metrics={}) is False
    assert task_complete(claim=second, result_key="results/x.png", processing_time=1,
                         metrics={}) is True
    task.refresh_from_db()
    assert (task.status, task.attempts) == (Task.Status.COMPLETED, 2)


@pytest.mark.django_db
def test_a_task_that_keeps_killing_workers_ends_failed(user, settings):
    task = make_task(owner=user, status=Task.Status.PROCESSING, attempts=4)
    assert task_recover(task_id=task.pk, status="processing", attempts=4) == "failed"
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert "Processing stopped unexpectedly 4 times" in task.error_message


@pytest.mark.django_db
def test_only_failed_tasks_can_be_retried(user):
    task = make_task(owner=user, status=Status.COMPLETED)
    with pytest.raises(Conflict, match="Only failed tasks can be retried; this one is completed"):
        task_retry(task=task)


@pytest.mark.django_db
def test_reprocess_refuses_a_task_in_flight_and_a_busy_upload(user):
    upload = make_upload(owner=user)
    busy = make_task(upload=upload, status=Status.PROCESSING)
    done = make_task(upload=upload, status=Status.COMPLETED)
    with pytest.raises(Conflict, match="is still processing"):
        task_reprocess(task=busy)
    with pytest.raises(Conflict, match="already has a task queued or processing"):
        task_reprocess(task=done)
    assert Task.objects.filter(upload=upload).count() == 2


@pytest.mark.django_db
def test_the_task_cap_counts_only_unfinished_tasks(user, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    make_task(owner=user, status=Status.COMPLETED)
    make_task(owner=user, status=Status.FAILED)
    make_task(owner=user, status=Status.QUEUED)
    check_task_quota(owner=user)  # one unfinished of two allowed
    make_task(owner=user, status=Status.PROCESSING)
    with pytest.raises(TooManyTasks, match="You have 2 unfinished tasks") as caught:
        check_task_quota(owner=user)
    assert caught.value.retry_after == 30


@pytest.mark.django_db
def test_a_stale_worker_cannot_finish_a_newer_claim_after_a_retry(user):
    """The retry resets ``attempts``, so the old and the new claim are both attempt 1: only the
    claim token tells them apart."""
    task = make_task(owner=user)
    stale = task_claim(task_id=task.pk)
    # The task is failed meanwhile (e.g. by the reconciler) and the owner retries it.
    Task.objects.filter(pk=task.pk).update(status=Status.FAILED)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("removal.services.tasks.task_enqueue", lambda task, at_front=False: "job")
        task_retry(task=Task.objects.get(pk=task.pk))
    fresh = task_claim(task_id=task.pk)
    assert stale.attempt == fresh.attempt == 1
    assert stale.token != fresh.token
    assert task_complete(claim=stale, result_key="results/stale.png", processing_time=1,
                         metrics={}) is False
    assert task_fail(claim=stale, message="stale worker") is False
    task_set_progress(claim=stale, progress=77)
    task.refresh_from_db()
    assert (task.status, task.result_key, task.error_message) == (Status.PROCESSING, "", "")
    assert task.progress != 77
    assert task_complete(claim=fresh, result_key="results/fresh.png", processing_time=1,
                         metrics={}) is True
    task.refresh_from_db()
    assert (task.status, task.result_key, task.lifetime_attempts) == (
        Status.COMPLETED, "results/fresh.png", 2)


# --- one lock order: a retry and retention of the same upload ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_retry_and_retention_of_the_same_upload_never_interleave(user, empty_queue):
    """Retention locks the upload, finds nothing in flight, and expires the task a moment later.
    A retry arriving in between waits for the upload's lock and is then refused, instead of
    queueing a task that retention expires under it (an accepted, charged, never-run retry)."""
    import threading

    from django.db import connection, transaction
    from django.utils import timezone

    from removal.models import Upload

    task = make_task(owner=user, status=Status.FAILED)
    busy_checked, retried = threading.Event(), threading.Event()

    def retention():  # what services.retention._expire_chunk does, paused at its window
        try:
            with transaction.atomic():
                list(Upload.objects.select_for_update(skip_locked=True)
                     .filter(pk=task.upload_id).values_list("pk"))
                assert not Task.objects.filter(upload_id=task.upload_id,
                                               status__in=[Status.QUEUED, Status.PROCESSING]
                                               ).exists()
                busy_checked.set()
                retried.wait(1.5)  # the retry runs now (or blocks on our lock)
                Task.objects.filter(upload_id=task.upload_id).exclude(
                    status=Status.EXPIRED).update(status=Status.EXPIRED, result_key="")
                Upload.objects.filter(pk=task.upload_id).update(expired_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=retention)
    thread.start()
    assert busy_checked.wait(10)
    outcome = None
    try:
        task_retry(task=task)
        outcome = "retried"
    except Conflict as exc:
        outcome = exc.detail
    retried.set()
    thread.join(10)
    task.refresh_from_db()
    assert task.status == Status.EXPIRED
    assert outcome == "This task expired: its original image was deleted; upload it again"
    assert empty_queue.count == 0  # nothing was queued for an expired task
