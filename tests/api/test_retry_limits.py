"""Issue 14 item 5: ``POST tasks/{id}/retry`` is throttled like uploads, counts against the
unfinished-task cap, and stops at a lifetime attempt limit that neither the API nor the admin
resets. The admin's retry action goes through the same service."""

from __future__ import annotations

import pytest

from removal.models import Task
from removal.services.tasks import task_claim, task_fail
from tests.factories import make_task, make_user
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db
Status = Task.Status


def test_retry_shares_the_upload_throttle(user, client_for, settings):
    settings.QUICKBG_UPLOAD_RATE = "2/hour"
    client = client_for(user)
    assert client.post("/api/v1/uploads", {"file": named(make_image())},
                       format="multipart").status_code == 202
    failed = [make_task(owner=user, status=Status.FAILED) for _ in range(2)]
    first = client.post(f"/api/v1/tasks/{failed[0].pk}/retry")
    second = client.post(f"/api/v1/tasks/{failed[1].pk}/retry")
    assert (first.status_code, second.status_code) == (202, 429)
    assert int(second["Retry-After"]) > 0
    failed[1].refresh_from_db()
    assert failed[1].status == Status.FAILED


def test_retry_counts_against_the_unfinished_task_cap(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    make_task(owner=user, status=Status.QUEUED)
    failed = [make_task(owner=user, status=Status.FAILED) for _ in range(2)]
    client = client_for(user)
    assert client.post(f"/api/v1/tasks/{failed[0].pk}/retry").status_code == 202
    refused = client.post(f"/api/v1/tasks/{failed[1].pk}/retry")
    assert refused.status_code == 429
    assert "unfinished tasks (limit 2)" in refused.json()["detail"]
    assert refused["Retry-After"] == "30"
    failed[1].refresh_from_db()
    assert failed[1].status == Status.FAILED
    assert Task.objects.filter(upload__owner=user, status=Status.QUEUED).count() == 2


def test_every_claim_counts_towards_the_lifetime_limit_and_a_retry_keeps_it(user, client_for):
    task = make_task(owner=user)
    client = client_for(user)
    for round_ in range(1, 4):
        claim = task_claim(task_id=task.pk)
        assert task_fail(claim=claim, message="boom") is True
        task.refresh_from_db()
        assert (task.attempts, task.lifetime_attempts) == (1, round_)
        assert client.post(f"/api/v1/tasks/{task.pk}/retry").status_code == 202
        task.refresh_from_db()
        assert (task.status, task.attempts, task.lifetime_attempts) == (Status.QUEUED, 0, round_)


def test_retry_past_the_lifetime_limit_is_409(user, client_for, settings):
    settings.QUICKBG_MAX_TASK_ATTEMPTS = 3
    task = make_task(owner=user, status=Status.FAILED, attempts=1, lifetime_attempts=3,
                     error_message="Processing failed")
    response = client_for(user).post(f"/api/v1/tasks/{task.pk}/retry")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "This task has been processed 3 times (limit 3); it cannot be retried again. "
        "Upload the image again if it should be processed."
    )
    task.refresh_from_db()
    assert (task.status, task.lifetime_attempts, task.error_message) == (
        Status.FAILED, 3, "Processing failed")


def test_the_admin_retry_action_keeps_the_lifetime_limit(client, settings, empty_queue,
                                                          django_capture_on_commit_callbacks):
    settings.QUICKBG_MAX_TASK_ATTEMPTS = 3
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    owner = make_user()
    spent = make_task(owner=owner, status=Status.FAILED, attempts=1, lifetime_attempts=3)
    fresh = make_task(owner=owner, status=Status.FAILED, attempts=3, lifetime_attempts=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/removal/task/", {
            "action": "retry_failed", "_selected_action": [str(spent.pk), str(fresh.pk)],
        }, follow=True)
    assert response.status_code == 200
    spent.refresh_from_db()
    fresh.refresh_from_db()
    assert (spent.status, spent.lifetime_attempts) == (Status.FAILED, 3)
    assert (fresh.status, fresh.attempts, fresh.lifetime_attempts) == (Status.QUEUED, 0, 2)
    assert empty_queue.count == 1
    assert [str(m) for m in response.context["messages"]] == [
        "Retried 1 failed task(s); skipped 1 that were not failed or could not be retried "
        "(attempt limit or the owner's task cap)."
    ]


@pytest.mark.django_db(transaction=True)
def test_retry_of_a_failed_task_gets_the_full_retry_budget(user, client_for):
    task = make_task(owner=user, status=Task.Status.FAILED, attempts=4,
                     error_message="Failed after 4 attempts: ...")
    response = client_for(user).post(f"/api/v1/tasks/{task.pk}/retry")
    assert response.status_code == 202
    task.refresh_from_db()
    assert (task.status, task.attempts) == (Task.Status.QUEUED, 0)
