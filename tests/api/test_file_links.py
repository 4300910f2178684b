"""A bad ``/api/v1/files/...`` link answers like the rest of the API: JSON ``{"detail": ...}``."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from removal import storage

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
