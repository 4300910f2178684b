"""API keys: managed under /api/v1/api-keys, used as X-Api-Key on every JWT endpoint."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import UserAPIKey
from removal.models import Task
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db


def create_key(client, name="ci", **extra) -> dict:
    response = client.post("/api/v1/api-keys", {"name": name, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def keyed(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def test_create_shows_the_key_once_and_stores_only_a_hash(user, client_for):
    client = client_for(user)
    body = create_key(client, "laptop")
    assert set(body) == {"id", "name", "prefix", "key", "created_at", "expires_at"}
    assert body["name"] == "laptop" and body["expires_at"] is None
    assert body["key"].startswith(body["prefix"] + ".")
    row = UserAPIKey.objects.get(public_id=body["id"])
    assert row.user == user
    secret = body["key"]
    assert row.hashed_key == "sha512$$" + hashlib.sha512(secret.encode()).hexdigest()
    assert secret not in row.id and secret.split(".", 1)[1] not in row.hashed_key

    listed = client.get("/api/v1/api-keys").json()
    items = listed["results"] if isinstance(listed, dict) else listed
    assert [item["id"] for item in items] == [body["id"]]
    assert "key" not in items[0] and items[0]["prefix"] == body["prefix"]
    assert items[0]["last_used_at"] is None


def test_a_key_authenticates_the_jwt_endpoints_and_records_its_use(user, client_for):
    key = create_key(client_for(user))["key"]
    client = keyed(key)
    upload = client.post("/api/v1/uploads", {"file": named(make_image(), "a.jpg")},
                         format="multipart")
    assert upload.status_code == 202, upload.content
    task = Task.objects.get(pk=upload.json()["task_id"])
    assert task.upload.owner == user
    assert client.get(f"/api/v1/tasks/{task.pk}").status_code == 200
    listed = client_for(user).get("/api/v1/api-keys").json()
    items = listed["results"] if isinstance(listed, dict) else listed
    assert items[0]["last_used_at"] is not None


def test_wrong_key_is_401(user):
    response = keyed("nonsense.key").get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid API key"


def test_revoked_key_is_401_with_a_clear_message(user, client_for):
    owner = client_for(user)
    body = create_key(owner)
    assert keyed(body["key"]).get("/api/v1/tasks").status_code == 200
    assert owner.delete(f"/api/v1/api-keys/{body['id']}").status_code == 204
    response = keyed(body["key"]).get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["detail"] == "This API key has been revoked; create a new one"
    assert UserAPIKey.objects.get(public_id=body["id"]).revoked
    listed = owner.get("/api/v1/api-keys").json()
    assert (listed["results"] if isinstance(listed, dict) else listed) == []


def test_expired_key_is_401_with_a_clear_message(user, client_for):
    body = create_key(client_for(user))
    UserAPIKey.objects.filter(public_id=body["id"]).update(
        expiry_date=timezone.now() - timedelta(seconds=1))
    response = keyed(body["key"]).get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["detail"] == "This API key has expired; create a new one"


def test_expires_at_in_the_past_is_refused(user, client_for):
    response = client_for(user).post(
        "/api/v1/api-keys", {"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 400
    assert "expires_at" in response.json()["detail"]


def test_another_users_key_is_404_and_stays_usable(user, other_user, client_for):
    body = create_key(client_for(user))
    assert client_for(other_user).delete(f"/api/v1/api-keys/{body['id']}").status_code == 404
    assert client_for(other_user).delete("/api/v1/api-keys/not-a-uuid").status_code == 404
    assert keyed(body["key"]).get("/api/v1/tasks").status_code == 200


def test_keys_cannot_be_managed_without_signing_in():
    assert APIClient().get("/api/v1/api-keys").status_code == 401


def test_an_api_key_cannot_create_list_or_revoke_keys(user, client_for):
    body = create_key(client_for(user))
    client = keyed(body["key"])
    for response in (client.post("/api/v1/api-keys", {"name": "heir"}, format="json"),
                     client.get("/api/v1/api-keys"),
                     client.delete(f"/api/v1/api-keys/{body['id']}")):
        assert response.status_code == 403
        assert "sign in" in response.json()["detail"]
    assert UserAPIKey.objects.filter(user=user, revoked=False).count() == 1
    assert client.get("/api/v1/tasks").status_code == 200  # the key still works elsewhere


def test_task_cap_counts_the_user_whichever_way_they_authenticate(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 1
    jwt = client_for(user)
    key = create_key(jwt)["key"]
    first = jwt.post("/api/v1/uploads", {"file": named(make_image())}, format="multipart")
    assert first.status_code == 202
    second = keyed(key).post("/api/v1/uploads", {"file": named(make_image())},
                             format="multipart")
    assert second.status_code == 429
    assert "unfinished tasks" in second.json()["detail"]


def test_upload_throttle_is_per_user_across_jwt_and_key(user, other_user, client_for, settings):
    settings.QUICKBG_UPLOAD_RATE = "2/min"
    settings.QUICKBG_MAX_QUEUED_TASKS = 100
    from django.core.cache import cache

    [cache._cache.get_client(None, write=True).delete(k) for k in cache._cache.get_client(None).scan_iter(cache.make_key("*"))]  # noqa: E501 - not cache.clear(): FLUSHDB would wipe every queue on the shared Redis
    jwt = client_for(user)
    key = create_key(jwt)["key"]
    assert jwt.post("/api/v1/uploads", {"file": named(make_image())},
                    format="multipart").status_code == 202
    assert keyed(key).post("/api/v1/uploads", {"file": named(make_image())},
                           format="multipart").status_code == 202
    third = keyed(key).post("/api/v1/uploads", {"file": named(make_image())}, format="multipart")
    assert third.status_code == 429 and int(third["Retry-After"]) > 0
    # Another user is counted apart.
    assert client_for(other_user).post("/api/v1/uploads", {"file": named(make_image())},
                                       format="multipart").status_code == 202
    [cache._cache.get_client(None, write=True).delete(k) for k in cache._cache.get_client(None).scan_iter(cache.make_key("*"))]  # noqa: E501 - not cache.clear(): FLUSHDB would wipe every queue on the shared Redis
def test_staff_see_and_revoke_any_key_in_the_admin(user, client):
    from tests.factories import make_user

    staff = make_user(is_staff=True, is_superuser=True)
    key, secret = UserAPIKey.objects.create_key(user=user, name="their key")
    client.force_login(staff)
    page = client.get("/admin/accounts/userapikey/")
    assert page.status_code == 200
    assert key.prefix in page.content.decode() and secret not in page.content.decode()
    response = client.post("/admin/accounts/userapikey/", {
        "action": "revoke_keys", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    assert "Revoked 1 API key(s)." in response.content.decode()
    key.refresh_from_db()
    assert key.revoked
    assert keyed(secret).get("/api/v1/tasks").status_code == 401


def test_a_password_change_revokes_every_api_key(user, client_for):
    key = create_key(client_for(user), "script")["key"]
    assert keyed(key).get("/api/v1/tasks").status_code == 200
    user.set_password("a whole new passphrase 42")
    user.save()
    refused = keyed(key).get("/api/v1/tasks")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "This API key has been revoked; create a new one"
    assert not UserAPIKey.objects.filter(user=user, revoked=False).exists()


def test_wrong_keys_are_throttled_per_address_before_any_lookup(user, client_for, settings):
    from django.core.cache import cache

    cache.clear()
    settings.QUICKBG_AUTH_RATE = "3/min"
    good = create_key(client_for(user))["key"]
    prefix = good.split(".")[0]
    guesses = [keyed(f"{prefix}.guess{n}").get("/api/v1/tasks", REMOTE_ADDR="127.0.0.9")
               for n in range(4)]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert guesses[3].json()["detail"].startswith(
        "Too many invalid API keys from this address; try again later. Expected available in")
    assert 0 < int(guesses[3]["Retry-After"]) <= 60
    # Even the right key waits at that address; another address is not affected.
    assert keyed(good).get("/api/v1/tasks", REMOTE_ADDR="127.0.0.9").status_code == 429
    assert keyed(good).get("/api/v1/tasks", REMOTE_ADDR="127.0.0.10").status_code == 200
    cache.clear()


def test_an_api_key_cannot_read_or_rotate_the_webhook_secret(user, client_for):
    jwt = client_for(user)
    key = keyed(create_key(jwt)["key"])
    for response in (key.get("/api/v1/webhooks/secret"), key.post("/api/v1/webhooks/secret")):
        assert response.status_code == 403
        assert response.json()["detail"] == (
            "API keys cannot read or rotate the webhook signing secret: sign in "
            "(POST /api/v1/auth/token) and send the JWT instead.")
    assert jwt.get("/api/v1/webhooks/secret").json()["secret"].startswith("whsec_")
    assert key.get("/api/v1/webhooks").status_code == 200  # endpoints stay open to keys
