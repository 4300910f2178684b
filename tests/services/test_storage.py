"""removal.storage: keys, reads, writes and deletes on local files and S3 (moto)."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from removal import storage
from tests.lifecycle import stored

pytestmark = pytest.mark.django_db


def test_s3_deletes_in_batches_of_at_most_1000_keys(s3):
    keys = [f"results/batch-{i}.png" for i in range(1001)]
    for key in keys[:3] + keys[-2:]:
        storage.write(key, b"x")
    calls = []
    client = default_storage.connection.meta.client
    client.meta.events.register(
        "before-call.s3.DeleteObjects",
        lambda params, **kw: calls.append(params["body"].count(b"<Key>")))
    assert storage.delete_many(keys) == []
    assert calls == [1000, 1]
    assert not any(stored(key) for key in keys[:3] + keys[-2:])
