"""removal.services.uploads, called directly: creating an upload from bytes (validated, stored
under a key of ours, its task queued) and deleting uploads with everything stored for them."""

from __future__ import annotations

import hashlib

import pytest

from removal import storage
from removal.errors import InvalidInput, TooManyTasks
from removal.models import Task, Upload
from removal.services.uploads import (
    stored_keys,
    upload_create_from_bytes,
    upload_delete,
    uploads_delete,
)
from tests.factories import make_task
from tests.images import make_image

pytestmark = pytest.mark.django_db


def test_create_from_bytes_stores_the_original_under_our_key_and_queues_a_task(user):
    data = make_image("PNG", size=(80, 60))
    task = upload_create_from_bytes(owner=user, data=data, filename="evil.html")
    upload = Upload.objects.get(pk=task.upload_id)
    assert task.status == Task.Status.QUEUED and upload.owner == user
    assert upload.original_filename == "evil.html"
    assert not upload.original_key.endswith(".html")  # the stored name is ours
    assert (upload.format, upload.width, upload.height) == ("PNG", 80, 60)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.read(upload.original_key) == data


def test_create_from_bytes_refuses_what_is_not_an_image_and_stores_nothing(user):
    with pytest.raises(InvalidInput):
        upload_create_from_bytes(owner=user, data=b"not an image at all", filename="a.png")
    assert not Upload.objects.exists() and not Task.objects.exists()
    assert storage.keys_under(f"originals/{user.pk}/") == []


def test_create_from_bytes_stores_a_background_beside_the_original(user):
    background = make_image("JPEG", size=(64, 64), color=(0, 0, 255))
    task = upload_create_from_bytes(owner=user, data=make_image("PNG"), filename="x.png",
                                    background=background)
    assert task.background_key
    assert storage.read(task.background_key) == background


def test_create_from_bytes_over_the_unfinished_task_cap_creates_nothing(user, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 1
    make_task(owner=user)  # queued
    with pytest.raises(TooManyTasks):
        upload_create_from_bytes(owner=user, data=make_image("PNG"), filename="x.png")
    assert Upload.objects.filter(owner=user).count() == 1


def test_upload_delete_removes_its_rows_and_every_stored_object(user):
    task = upload_create_from_bytes(owner=user, data=make_image("PNG"), filename="x.png",
                                    background=make_image("PNG"))
    result = storage.write(storage.result_key(task_id=task.pk), b"result")
    Task.objects.filter(pk=task.pk).update(status=Task.Status.COMPLETED, result_key=result)
    upload = Upload.objects.get(pk=task.upload_id)
    keys = stored_keys(upload_ids=[upload.pk])
    assert set(keys) == {upload.original_key, task.background_key, result}

    assert upload_delete(upload=upload) == []
    assert not Upload.objects.filter(pk=upload.pk).exists()
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not any(storage.exists(key) for key in keys)


def test_uploads_delete_takes_only_the_uploads_of_the_queryset(user, other_user):
    mine = upload_create_from_bytes(owner=user, data=make_image("PNG"), filename="a.png")
    theirs = upload_create_from_bytes(owner=other_user, data=make_image("PNG"), filename="b.png")
    my_key = Upload.objects.get(pk=mine.upload_id).original_key
    assert storage.exists(my_key)
    assert uploads_delete(queryset=Upload.objects.filter(owner=user)) == []
    assert list(Upload.objects.values_list("pk", flat=True)) == [theirs.upload_id]
    assert not storage.exists(my_key)
    assert storage.exists(Upload.objects.get(pk=theirs.upload_id).original_key)
