"""removal.services.retention, called directly: expiring uploads, purging Idempotency-Key records,
deleting an account."""

from __future__ import annotations

from datetime import timedelta

import pytest

from removal.models import IdempotencyKey


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
