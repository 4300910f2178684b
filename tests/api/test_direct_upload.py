"""``s3_key`` uploads accept only keys the service issued to the caller; presigned POSTs are
size-limited and land in the caller's own prefix (moto in server mode, real HTTP)."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from removal.models import DirectUpload, Task, Upload
from tests.images import make_image

pytestmark = pytest.mark.django_db(transaction=True)


def presign(client, filename="photo.jpg") -> dict:
    response = client.post("/api/v1/uploads/presign", {"filename": filename}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def put(grant: dict, data: bytes) -> requests.Response:
    return requests.post(grant["url"], data=grant["fields"], files={"file": ("f", data)},
                         timeout=30)


def submit(client, key: str):
    return client.post("/api/v1/uploads", {"s3_key": key}, format="json")


@pytest.mark.parametrize(
    "key",
    ["../incoming/1/x.jpg", "incoming/1/../2/x.jpg", "incoming/1/%2e%2e/x.jpg", "/incoming/1/x.jpg",
     "incoming\\\\1\\\\x.jpg", "incoming/1/x\\x00.jpg", "incoming/" + "a" * 600, "incoming//x.jpg"],
    ids=["dotdot-start", "dotdot-mid", "percent-encoded", "leading-slash", "backslash", "nul",
         "too-long", "empty-segment"],
)
def test_malformed_keys_are_400_and_enqueue_nothing(user, client_for, s3, empty_queue, key):
    response = submit(client_for(user), key)
    assert response.status_code == 400
    assert "Invalid s3_key" in response.json()["detail"] or "s3_key" in response.json()["detail"]
    assert Task.objects.count() == 0 and empty_queue.count == 0


def test_another_users_issued_key_is_404(user, other_user, client_for, s3, empty_queue):
    grant = presign(client_for(other_user))
    assert put(grant, make_image()).status_code in (200, 204)
    response = submit(client_for(user), grant["s3_key"])
    assert response.status_code == 404
    assert Task.objects.count() == 0 and empty_queue.count == 0


def test_a_key_in_my_prefix_that_was_not_issued_is_404(user, client_for, s3):
    key = f"incoming/{user.pk}/not-issued.jpg"
    s3.put_object(Bucket="quickbg-test", Key=key, Body=make_image())
    response = submit(client_for(user), key)
    assert response.status_code == 404
    assert "presign" in response.json()["detail"]


def test_issued_key_with_nothing_uploaded_is_404(user, client_for, s3):
    grant = presign(client_for(user))
    response = submit(client_for(user), grant["s3_key"])
    assert response.status_code == 404
    assert response.json()["detail"] == "Nothing has been uploaded to this s3_key yet"


def test_issued_key_is_accepted_once(user, client_for, s3, empty_queue):
    client = client_for(user)
    grant = presign(client, "../../evil name.jpg")
    assert grant["s3_key"].startswith(f"incoming/{user.pk}/")
    assert ".." not in grant["s3_key"]
    assert put(grant, make_image()).status_code in (200, 204)
    assert submit(client, grant["s3_key"]).status_code == 202
    again = submit(client, grant["s3_key"])
    assert again.status_code == 409
    assert Upload.objects.count() == 1 and empty_queue.count == 1
    assert DirectUpload.objects.get().used_at is not None


def test_presigned_post_is_size_limited_and_oversized_objects_are_refused(
    user, client_for, s3, settings, empty_queue
):
    settings.QUICKBG_MAX_UPLOAD_MB = 0.01  # ~10 KB
    client = client_for(user)
    grant = presign(client)
    assert grant["max_bytes"] == 10485
    # S3 enforces the signed policy (moto does not, so read the policy itself)...
    policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
    assert ["content-length-range", 1, 10485] in policy["conditions"]
    assert {"key": grant["s3_key"]} in policy["conditions"]
    # ...and the service checks the stored object's size again when the key is submitted.
    assert put(grant, b"\xff" * 20_000).status_code in (200, 204)
    response = submit(client, grant["s3_key"])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("File size (0.0MB) exceeds maximum")
    assert Task.objects.count() == 0 and empty_queue.count == 0


def test_presign_without_s3_is_a_clear_400(user, client_for):
    response = client_for(user).post("/api/v1/uploads/presign", {"filename": "a.jpg"},
                                     format="json")
    assert response.status_code == 400
    assert "Direct uploads need S3 storage" in response.json()["detail"]


def test_a_direct_upload_key_is_server_chosen_and_the_name_stays_in_the_row(user, client_for,
                                                                            s3):
    client = client_for(user)
    grant = presign(client, filename="evil.html")
    assert grant["s3_key"].startswith(f"incoming/{user.pk}/")
    assert grant["s3_key"].endswith("/original") and "evil" not in grant["s3_key"]
    assert put(grant, make_image("PNG", (300, 200))).status_code in (200, 204)
    response = submit(client, grant["s3_key"])
    assert response.status_code == 202, response.content
    upload = Upload.objects.get(pk=response.json()["upload_id"])
    assert (upload.original_filename, upload.format) == ("evil.html", "PNG")
