"""``/api/v1/files/...`` links: a download URL serves its one object and expires; a bad link
answers like the rest of the API, JSON ``{"detail": ...}``."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from django.core import signing
from rest_framework.test import APIClient

from removal import storage
from removal.models import Task
from tests.factories import make_task

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/files/not-a-token", "Invalid download link"),
        ("/api/v1/files/", "Invalid download link"),
        ("/api/v1/files/abc/def", "Invalid download link"),
    ],
)
def test_bad_download_link_is_a_json_404(path, detail):
    response = APIClient().get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": detail}


def test_download_link_to_a_deleted_file_is_a_json_410():
    storage.write("results/gone.png", b"png")
    path = storage.download_url("results/gone.png", content_type="image/png")
    client = APIClient()
    assert b"".join(client.get(path).streaming_content) == b"png"
    storage.delete_quietly("results/gone.png")
    response = client.get(path)
    assert response.status_code == 410
    assert response.json() == {"detail": "This file was deleted (by retention or by its owner)"}


def test_expired_download_link_is_a_json_404(settings):
    storage.write("results/old.png", b"png")
    path = storage.download_url("results/old.png", content_type="image/png")
    settings.QUICKBG_URL_EXPIRY = -1  # every token is already past its age
    response = APIClient().get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "This download link has expired"}


def test_download_url_serves_its_one_object_and_expires(user, client_for, settings):
    storage.write("results/a.png", b"first")
    storage.write("results/b.png", b"second")
    task = make_task(owner=user, status=Task.Status.COMPLETED, result_key="results/a.png")
    url = client_for(user).get(f"/api/v1/tasks/{task.pk}").json()["presigned_url"]
    path = urlparse(url).path
    anonymous = APIClient()
    assert b"".join(anonymous.get(path).streaming_content) == b"first"
    # The token names its object; editing it to reach another object breaks the signature.
    forged = signing.dumps({"k": "results/b.png", "f": ""}, salt="not-the-right-salt")
    assert anonymous.get(f"/api/v1/files/{forged}").status_code == 404
    settings.QUICKBG_URL_EXPIRY = 1
    time.sleep(2.1)
    expired = anonymous.get(path)
    assert expired.status_code == 404
