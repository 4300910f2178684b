"""DELETE uploads/{id} and DELETE account, on local storage and on S3 (moto). "Nothing is left
behind" is checked on every path: after it, each key the test stored exists exactly when a row
still points to it unmarked."""

from __future__ import annotations

import pytest

from removal import jobs, storage
from removal.models import DirectUpload, Task, Upload
from removal.services.tasks import task_claim
from tests.factories import PASSWORD, make_task
from tests.lifecycle import (
    assert_nothing_left_behind,
    bucket_keys,
    completed_task,
    stored,
    stored_upload,
)

pytestmark = pytest.mark.django_db


def test_delete_upload_removes_original_results_and_rows(backend, user, other_user, client_for):
    upload = stored_upload(user)
    first, second = completed_task(upload), completed_task(upload)
    queued = make_task(upload=upload)  # not started yet: its job will find nothing to claim
    keep = stored_upload(user)
    keep_task = completed_task(keep)
    theirs = stored_upload(other_user)
    their_task = completed_task(theirs)
    keys = {upload.original_key, first.result_key, second.result_key, keep.original_key,
            keep_task.result_key, theirs.original_key, their_task.result_key}
    assert all(stored(key) for key in keys)

    response = client_for(user).delete(f"/api/v1/uploads/{upload.pk}")

    assert response.status_code == 204 and response.content == b""
    assert not Upload.objects.filter(pk=upload.pk).exists()
    assert not Task.objects.filter(pk__in=[first.pk, second.pk, queued.pk]).exists()
    for key in (upload.original_key, first.result_key, second.result_key):
        assert not stored(key), key
    assert stored(keep.original_key) and stored(their_task.result_key)
    assert jobs.process_task(str(queued.pk)) == "skipped"
    assert_nothing_left_behind(keys)


def test_another_users_upload_is_404_and_kept(backend, user, other_user, client_for):
    theirs = stored_upload(other_user)
    task = completed_task(theirs)
    response = client_for(user).delete(f"/api/v1/uploads/{theirs.pk}")
    assert response.status_code == 404
    assert Upload.objects.filter(pk=theirs.pk).exists()
    assert stored(theirs.original_key) and stored(task.result_key)


def test_account_delete_needs_the_password_and_removes_everything(backend, user, other_user,
                                                                  client_for):
    uploads = [stored_upload(user) for _ in range(3)]
    results = [completed_task(upload) for upload in uploads[:2]]
    claim = task_claim(task_id=make_task(upload=uploads[2]).pk)  # processing
    incoming = f"{storage.incoming_prefix(user.pk)}abc/direct.jpg"
    storage.write(incoming, b"uploaded directly, never submitted")
    DirectUpload.objects.create(owner=user, key=incoming)
    theirs = stored_upload(other_user)
    keys = {u.original_key for u in uploads} | {t.result_key for t in results} | {
        incoming, theirs.original_key}
    client = client_for(user)

    wrong = client.delete("/api/v1/account", {"password": "not it"}, format="json")
    assert wrong.status_code == 400 and "password" in wrong.json()["detail"]
    assert Upload.objects.filter(owner=user).count() == 3 and all(stored(k) for k in keys)

    response = client.delete("/api/v1/account", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert not Upload.objects.filter(owner_id=user.pk).exists()
    assert not Task.objects.filter(upload__owner_id=user.pk).exists()
    assert not DirectUpload.objects.filter(owner_id=user.pk).exists()
    assert not any(stored(k) for k in keys - {theirs.original_key})
    assert stored(theirs.original_key)
    assert Task.objects.filter(pk=claim.task.pk).count() == 0
    assert client.get("/api/v1/tasks").status_code == 401  # the token's user is gone
    assert_nothing_left_behind(keys)


def test_account_delete_deactivates_first_so_nothing_sent_meanwhile_is_kept(backend, user,
                                                                            client_for,
                                                                            monkeypatch):
    """While the deletion runs, the user's JWT and API key are refused, and an upload that
    passed authentication just before is refused at its commit: none of its images stay."""
    from rest_framework.test import APIClient

    from accounts.services import api_key_create
    from removal.errors import Conflict
    from removal.services import retention, uploads
    from tests.images import make_image

    stored_upload(user)
    _, raw_key = api_key_create(user=user, name="script")
    client = client_for(user)
    with_key = APIClient()
    with_key.credentials(HTTP_X_API_KEY=raw_key)
    assert with_key.get("/api/v1/tasks").status_code == 200
    before = bucket_keys()
    during = {}
    real_delete = retention.uploads_delete

    def meanwhile(*, queryset):
        during["jwt"] = client.get("/api/v1/tasks").status_code
        during["api key"] = with_key.get("/api/v1/tasks").status_code
        try:
            uploads.upload_create_from_bytes(owner=user, data=make_image(), filename="late.png")
        except Conflict as exc:
            during["late upload"] = exc.detail
        return real_delete(queryset=queryset)

    monkeypatch.setattr(retention, "uploads_delete", meanwhile)
    response = client.delete("/api/v1/account", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert during == {"jwt": 401, "api key": 401, "late upload": (
        "This account is deactivated or being deleted; nothing was created")}
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert not Upload.objects.filter(owner_id=user.pk).exists()
    assert bucket_keys() - before == set()  # the late upload stored nothing that stayed
    assert not any(key.startswith(f"originals/{user.pk}/") for key in bucket_keys())


def test_schema_documents_the_delete_endpoints(client):
    schema = client.get("/api/v1/schema?format=json").json()
    assert "204" in schema["paths"]["/api/v1/uploads/{id}"]["delete"]["responses"]
    account = schema["paths"]["/api/v1/account"]["delete"]
    assert "204" in account["responses"]
    assert '{"password":' in account["description"]
