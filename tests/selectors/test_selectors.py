"""selectors: the reads the API, the admin and the commands share."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from removal import selectors
from removal.models import Task, Upload
from tests.factories import make_task, make_upload, make_user

Status = Task.Status
pytestmark = pytest.mark.django_db


def test_owner_match_finds_by_id_username_and_email_only():
    alice, bob = make_user(email="Alice@Example.com"), make_user()
    make_upload(owner=alice), make_upload(owner=bob)

    def owners(value):
        return {u.owner_id for u in Upload.objects.filter(
            selectors.owner_match(value, owner_path="owner"))}

    assert owners(str(alice.pk)) == {alice.pk}
    assert owners(alice.username) == {alice.pk}
    assert owners("alice@example.COM") == {alice.pk}  # email is case-insensitive
    assert owners("nobody") == set()
    assert owners("٣") == set()  # a non-ASCII digit is not an id
    assert owners("9" * 30) == set()  # too big for a bigint: not an id, and no error


def test_tasks_matching_combines_criteria_oldest_first():
    alice = make_user()
    now = timezone.now()
    old = make_task(owner=alice, status=Status.FAILED)
    Task.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=3))
    new = make_task(owner=alice, status=Status.FAILED, model="isnet-general-use-quant")
    make_task(owner=alice, status=Status.COMPLETED)
    make_task(status=Status.FAILED)  # another user's

    failed = selectors.tasks_matching(statuses=["failed"], user=alice.email)
    assert list(failed) == [old, new]
    assert list(selectors.tasks_matching(statuses=["failed"], user=alice.email,
                                         since=now - timedelta(days=1))) == [new]
    assert list(selectors.tasks_matching(model="isnet-general-use-quant")) == [new]
    assert list(selectors.tasks_matching(ids=[old.pk], until=now)) == [old]


def test_reprocess_plan_applies_the_skip_rules_in_order():
    upload = make_upload(owner=make_user())
    first = make_task(upload=upload, status=Status.COMPLETED)
    second = make_task(upload=upload, status=Status.FAILED)  # same upload as ``first``
    in_flight = make_task(status=Status.PROCESSING)
    busy_upload = make_upload(owner=make_user())
    make_task(upload=busy_upload, status=Status.QUEUED)
    done_on_busy = make_task(upload=busy_upload, status=Status.COMPLETED)
    free = make_task(status=Status.FAILED)

    chosen = Task.objects.filter(pk__in=[t.pk for t in (first, second, in_flight, done_on_busy,
                                                          free)])
    plan = dict(selectors.reprocess_plan(chosen))
    assert plan == {
        first: None,
        second: selectors.SKIP_SAME_UPLOAD,
        in_flight: selectors.SKIP_IN_FLIGHT,
        done_on_busy: selectors.SKIP_UPLOAD_BUSY,
        free: None,
    }
