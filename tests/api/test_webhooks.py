"""Webhooks through the API: standing endpoints per user (refused URLs, a count limit), the signing
secret and its rotation, an upload's refused webhook_url."""

from __future__ import annotations

import pytest

from removal.models import Task
from tests.images import make_image


@pytest.mark.django_db
def test_endpoints_are_created_listed_and_deleted_per_user(user, other_user, client_for,
                                                           settings):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.1:9"]
    mine, theirs = client_for(user), client_for(other_user)
    created = mine.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"] == "http://127.0.0.1:9/hook" and set(body) == {"id", "url", "created_at"}
    assert [e["id"] for e in mine.get("/api/v1/webhooks").json()] == [body["id"]]
    assert theirs.get("/api/v1/webhooks").json() == []
    assert theirs.delete(f"/api/v1/webhooks/{body['id']}").status_code == 404
    again = mine.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert again.status_code == 400 and "already registered" in again.json()["detail"]
    assert mine.delete(f"/api/v1/webhooks/{body['id']}").status_code == 204
    assert mine.get("/api/v1/webhooks").json() == []


@pytest.mark.django_db
@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.2:8080/hook", "resolves to a loopback address"),
    ("http://169.254.169.254/hook", "link-local"),
    ("ftp://example.com/hook", "Only http and https"),
    ("http://user:pw@example.com/hook", "credentials"),
])
def test_endpoint_with_a_refused_url_is_400(user, client_for, url, message, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: pytest.fail("connection attempted"))
    response = client_for(user).post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db
def test_endpoint_count_is_limited(user, client_for, settings):
    settings.QUICKBG_WEBHOOK_MAX_ENDPOINTS = 2
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.0/8"]
    client = client_for(user)
    for n in range(2):
        assert client.post("/api/v1/webhooks", {"url": f"http://127.0.0.1:9/{n}"},
                           format="json").status_code == 201
    third = client.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/x"}, format="json")
    assert third.status_code == 400 and "limit" in third.json()["detail"]


@pytest.mark.django_db
def test_secret_is_per_user_and_rotates(user, other_user, client_for):
    mine = client_for(user)
    first = mine.get("/api/v1/webhooks/secret").json()["secret"]
    assert first.startswith("whsec_") and len(first) > 40
    assert mine.get("/api/v1/webhooks/secret").json()["secret"] == first
    assert client_for(other_user).get("/api/v1/webhooks/secret").json()["secret"] != first
    rotated = mine.post("/api/v1/webhooks/secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (first, None)
    assert rotated.json()["rotated_at"] is not None
    assert mine.get("/api/v1/webhooks/secret").json()["secret"] == rotated.json()["secret"]


@pytest.mark.django_db
def test_upload_with_a_refused_webhook_url_is_400_and_creates_nothing(user, client_for):
    from tests.helpers import named

    response = client_for(user).post("/api/v1/uploads", {
        "file": named(make_image(), "a.jpg"), "webhook_url": "http://10.0.0.1/hook"},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("webhook_url: ")
    assert "'10.0.0.1' resolves to a private address" in response.json()["detail"]
    assert Task.objects.count() == 0
