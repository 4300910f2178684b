"""removal.services.retention, called directly: expiring uploads, purging Idempotency-Key records,
deleting an account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from removal import storage
from removal.errors import InvalidInput
from removal.models import IdempotencyKey, Task, Upload
from removal.services.retention import (
    account_delete,
    purge_plan,
    retention_cutoff,
    uploads_expire,
)
from tests.factories import PASSWORD
from tests.lifecycle import completed_task, stored_upload


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


def test_retention_cutoff_is_off_without_days_and_days_before_now(settings):
    settings.QUICKBG_RETENTION_DAYS = 0
    assert retention_cutoff() is None
    now = timezone.now()
    assert retention_cutoff(days=30, now=now) == now - timedelta(days=30)


@pytest.mark.django_db
def test_uploads_expire_marks_finished_uploads_deletes_their_objects_and_skips_busy_ones(user):
    done = stored_upload(user)
    result = completed_task(done)
    busy = stored_upload(user)
    in_flight = Task.objects.create(upload=busy, model=result.model)
    cutoff = timezone.now() + timedelta(seconds=1)

    plan = purge_plan(cutoff=cutoff)
    assert (plan.uploads, plan.tasks) == (1, 1)
    assert storage.exists(done.original_key)  # planning changes nothing

    report = uploads_expire(cutoff=cutoff)
    assert (report.uploads, report.tasks, report.objects) == (1, 1, 2)
    done.refresh_from_db()
    result.refresh_from_db()
    assert done.expired_at is not None
    assert (result.status, result.result_key) == (Task.Status.EXPIRED, "")
    assert not storage.exists(done.original_key)
    assert Upload.objects.get(pk=busy.pk).expired_at is None
    assert storage.exists(busy.original_key)
    assert Task.objects.get(pk=in_flight.pk).status == Task.Status.QUEUED


@pytest.mark.django_db
def test_account_delete_with_a_wrong_password_deletes_nothing(user):
    upload = stored_upload(user)
    with pytest.raises(InvalidInput):
        account_delete(user=user, password="not the password")
    user.refresh_from_db()
    assert user.is_active and storage.exists(upload.original_key)


@pytest.mark.django_db
def test_account_delete_removes_the_user_its_uploads_and_their_objects(user, other_user):
    mine = stored_upload(user)
    result = completed_task(mine)
    theirs = stored_upload(other_user)
    assert account_delete(user=user, password=PASSWORD) == []
    assert not User.objects.filter(pk=user.pk).exists()
    assert list(Upload.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert not storage.exists(mine.original_key) and not storage.exists(result.result_key)
    assert storage.exists(theirs.original_key)
