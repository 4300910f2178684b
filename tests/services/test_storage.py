"""``removal.storage``: the one module that builds keys, reads what they say and reaches the
configured storage (local files, or S3 through moto)."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.storage import default_storage

from removal import storage
from tests.lifecycle import stored

TASK = uuid.UUID("12345678-1234-5678-1234-567812345678")
UPLOAD = uuid.UUID("87654321-4321-8765-4321-876543218765")


def test_keys_are_server_chosen_and_sit_together():
    original = storage.original_key(owner_id=7, upload_id=UPLOAD, fmt="JPEG")
    assert original == f"originals/7/{UPLOAD}/original.jpg"
    background = storage.background_key(owner_id=7, upload_id=UPLOAD)
    assert background == f"originals/7/{UPLOAD}/background"
    assert background.rsplit("/", 1)[0] == original.rsplit("/", 1)[0]
    assert storage.result_key(task_id=TASK, extension="webp") == f"results/{TASK}.webp"


@pytest.mark.parametrize(("extension", "content_type"), [
    ("png", "image/png"), ("webp", "image/webp"), ("jpg", "image/jpeg"),
    ("zip", "application/zip"), ("html", "application/octet-stream"),
])
def test_a_results_format_and_type_come_from_its_key(extension, content_type):
    key = storage.result_key(task_id=TASK, extension=extension)
    assert storage.extension_of(key) == extension
    assert storage.content_type_of(key) == content_type


def test_a_download_link_never_announces_a_zip_or_other_non_image_type():
    key = storage.result_key(task_id=TASK, extension="zip")
    token = storage.download_url(key, content_type=storage.content_type_of(key)).rsplit("/", 1)[-1]
    assert storage.resolve_download_token(token)[2] == "application/octet-stream"


@pytest.mark.parametrize(("key", "ok"), [
    ("incoming/7/shoe.jpg", True), ("", False), ("/incoming/7/a.jpg", False),
    ("incoming/../8/a.jpg", False), ("incoming//a.jpg", False), ("incoming/7/a%2e.jpg", False),
    ("incoming\\7\\a.jpg", False), ("incoming/7/a\x00.jpg", False), ("a" * 513, False),
])
def test_only_well_formed_keys_are_accepted_from_clients(key, ok):
    assert storage.is_well_formed_key(key) is ok


def test_write_open_stream_and_read_return_the_bytes():
    key = storage.result_key(task_id=uuid.uuid4())
    storage.write(key, b"\x89PNG result", content_type=storage.content_type_of(key))
    with storage.open_stream(key) as fh:
        assert fh.read(4) == b"\x89PNG" and fh.read() == b" result"
    assert storage.read(key) == b"\x89PNG result" and storage.size(key) == 11
    storage.delete_quietly(key)
    assert not storage.exists(key)
    with pytest.raises(FileNotFoundError):
        storage.open_stream(key)


def test_probe_writes_reads_and_deletes_leaving_nothing():
    storage.probe()
    assert not default_storage.exists("health") or default_storage.listdir("health")[1] == []


def test_probe_raises_when_storage_cannot_be_written(settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"a file where the media folder should be")
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(blocker / "media")}}}
    with pytest.raises(OSError):
        storage.probe()


@pytest.mark.django_db
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
