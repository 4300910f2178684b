"""Signing in over the API: JWT pairs, refresh rotation and sign-out, the session's maximum age,
password changes revoking sessions, what a forged, expired or unsigned token gets, and the token
endpoints' throttle per client address."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from axes.models import AccessAttempt
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_no_token_is_401(api):
    for path in ("/api/v1/uploads", "/api/v1/tasks"):
        response = api.get(path)
        assert response.status_code == 401
        assert response.json()["detail"]


def test_token_pair_and_refresh_rotation_with_blacklist(api, user):
    pair = api.post("/api/v1/auth/token", {"username": user.username, "password": PASSWORD},
                    format="json").json()
    rotated = api.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != pair["refresh"]
    # The rotated-out refresh token is blacklisted: using it again is refused.
    reused = api.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert reused.status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {rotated.json()['access']}")
    assert api.get("/api/v1/tasks").status_code == 200


def test_wrong_password_is_401(api, user):
    response = api.post("/api/v1/auth/token", {"username": user.username, "password": "nope"},
                        format="json")
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_noinput_from_environment():
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if db["ENGINE"].endswith("postgresql") else f"sqlite:///{db['NAME']}",
        "DJANGO_SUPERUSER_USERNAME": "root-admin",
        "DJANGO_SUPERUSER_EMAIL": "root@example.com",
        "DJANGO_SUPERUSER_PASSWORD": "a-long-admin-password",
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    admin = User.objects.get(username="root-admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password("a-long-admin-password")


# --- Sessions end: sign-out, password change, absolute lifetime --------------------------------


def sign_in(api, user) -> dict:
    response = api.post("/api/v1/auth/token", {"username": user.username, "password": PASSWORD},
                        format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(api, token: str):
    return api.post("/api/v1/auth/token/refresh", {"refresh": token}, format="json")


def claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def test_logout_revokes_the_refresh_token(api, user):
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    pair = sign_in(api, user)
    response = api.post("/api/v1/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200
    assert BlacklistedToken.objects.filter(token__jti=claims(pair["refresh"])["jti"]).exists()
    refused = refresh(api, pair["refresh"])
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Token is blacklisted"
    # Signing out twice, or with garbage, is a 401 and changes nothing else.
    again = api.post("/api/v1/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401
    assert api.post("/api/v1/auth/logout", {"refresh": "x.y.z"}, format="json").status_code == 401


def test_logout_leaves_the_users_other_sessions(api, user):
    first, second = sign_in(api, user), sign_in(api, user)
    assert api.post("/api/v1/auth/logout", {"refresh": first["refresh"]},
                    format="json").status_code == 200
    assert refresh(api, second["refresh"]).status_code == 200


def test_admin_password_change_revokes_every_refresh_token(api, user, other_user):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    first = sign_in(api, user)
    rotated = refresh(api, sign_in(api, user)["refresh"]).json()["refresh"]  # a rotated one too
    theirs = sign_in(api, other_user)
    admin = User.objects.create_superuser("boss", "boss@example.com", "boss-password-123")
    from django.test import Client

    browser = Client()
    browser.force_login(admin)
    response = browser.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": "a-new-long-password-42", "password2": "a-new-long-password-42",
         "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert user.check_password("a-new-long-password-42")
    for token in (first["refresh"], rotated):
        refused = refresh(api, token)
        assert refused.status_code == 401 and refused.json()["detail"] == "Token is blacklisted"
    live = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    assert not live.exists()
    assert refresh(api, theirs["refresh"]).status_code == 200  # other users keep theirs
    # The new password starts a new session that works.
    fresh = api.post("/api/v1/auth/token",
                     {"username": user.username, "password": "a-new-long-password-42"},
                     format="json")
    assert fresh.status_code == 200
    assert refresh(api, fresh.json()["refresh"]).status_code == 200


def test_set_password_and_save_revokes_refresh_tokens(api, user):
    pair = sign_in(api, user)
    user.set_password("another-long-password-7")
    user.save()
    assert refresh(api, pair["refresh"]).status_code == 401


def test_refresh_keeps_the_sign_in_time(api, user):
    import time

    pair = sign_in(api, user)
    signed_in = claims(pair["refresh"])["auth_time"]
    assert abs(signed_in - time.time()) < 60
    token = pair["refresh"]
    for _ in range(3):
        response = refresh(api, token)
        assert response.status_code == 200
        token = response.json()["refresh"]
        assert claims(token)["auth_time"] == signed_in
        assert claims(token)["jti"] != claims(pair["refresh"])["jti"]


def test_refresh_past_the_session_maximum_age_is_401(api, user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.tokens import SessionRefreshToken

    settings.QUICKBG_SESSION_MAX_AGE_DAYS = 30
    old = SessionRefreshToken.for_user(user)
    old["auth_time"] = int((timezone.now() - timedelta(days=30, minutes=1)).timestamp())
    response = refresh(api, str(old))  # its own exp is a day away: only the session is over
    assert response.status_code == 401
    assert response.json()["detail"] == (
        "Your session has ended (sessions last at most 30 days from sign-in). "
        "Please sign in again."
    )
    recent = SessionRefreshToken.for_user(user)
    recent["auth_time"] = int((timezone.now() - timedelta(days=29)).timestamp())
    assert refresh(api, str(recent)).status_code == 200
    settings.QUICKBG_SESSION_MAX_AGE_DAYS = 28
    again = SessionRefreshToken.for_user(user)
    again["auth_time"] = int((timezone.now() - timedelta(days=29)).timestamp())
    assert refresh(api, str(again)).status_code == 401


def test_refresh_token_without_a_sign_in_time_is_401(api, user):
    from rest_framework_simplejwt.tokens import RefreshToken

    legacy = RefreshToken.for_user(user)  # as issued before sessions had a maximum age
    response = refresh(api, str(legacy))
    assert response.status_code == 401
    assert "sign in again" in response.json()["detail"]


def test_admin_switching_password_sign_in_off_ends_api_sessions(api, user):
    from django.test import Client

    pair = sign_in(api, user)
    admin = User.objects.create_superuser("boss2", "boss2@example.com", "boss-password-456")
    browser = Client()
    browser.force_login(admin)
    response = browser.post(f"/admin/accounts/user/{user.pk}/password/",
                            {"usable_password": "false", "unset-password": "1"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.has_usable_password()
    refused = refresh(api, pair["refresh"])
    assert refused.status_code == 401


@pytest.mark.django_db
def test_an_overlong_username_is_a_401_not_a_500(api):
    response = api.post("/api/v1/auth/token", {"username": "x" * 5000, "password": "nope"},
                        format="json")
    assert response.status_code == 401
    assert AccessAttempt.objects.get().username == "x" * 255


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_access_token_lives_five_minutes(user):
    token = AccessToken.for_user(user)
    assert token["exp"] - token["iat"] == 300


def test_expired_token_is_401(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert bearer(str(token)).get("/api/v1/tasks").status_code == 401


def test_tampered_token_is_401(user, other_user):
    header, payload, signature = str(AccessToken.for_user(user)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = str(other_user.pk)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert bearer(f"{header}.{forged}.{signature}").get("/api/v1/tasks").status_code == 401


def test_alg_none_token_is_401(user):
    claims = dict(AccessToken.for_user(user).payload)
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert bearer(unsigned).get("/api/v1/tasks").status_code == 401


def test_inactive_users_token_is_401(user):
    token = str(AccessToken.for_user(user))
    user.is_active = False
    user.save()
    assert bearer(token).get("/api/v1/tasks").status_code == 401


def test_a_separate_signing_key_can_be_configured(settings):
    """JWT_SIGNING_KEY signs tokens instead of SECRET_KEY (so rotating one leaves the other)."""
    script = (
        "import django; django.setup()\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "token = AccessToken(); token['user_id'] = '1'; print(token)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quickbg.settings",
           "JWT_SIGNING_KEY": "a-separate-jwt-signing-key-0123456789abcdef"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip().splitlines()[-1]
    claims = jwt.decode(token, "a-separate-jwt-signing-key-0123456789abcdef",
                        algorithms=["HS256"])
    assert claims["user_id"] == "1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])
    assert bearer(token).get("/api/v1/tasks").status_code == 401  # this process: other key


def test_token_requests_are_throttled_per_address(user, api, settings):
    settings.QUICKBG_AUTH_RATE = "3/hour"
    codes = [api.post("/api/v1/auth/token", {"username": user.username, "password": "guess"},
                      format="json", REMOTE_ADDR="203.0.113.9").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    elsewhere = api.post("/api/v1/auth/token", {"username": user.username, "password": "x"},
                         format="json", REMOTE_ADDR="203.0.113.10")
    assert elsewhere.status_code == 401


def test_token_throttle_ignores_a_client_chosen_x_forwarded_for(user, api, settings):
    """With NUM_PROXIES=0 (the default) the client's own X-Forwarded-For never names the client:
    45 guesses, each with a new forged address (and a new username, so only the throttle can
    stop them), run into the per-address limit."""
    settings.QUICKBG_AUTH_RATE = "20/min"
    codes = [
        api.post("/api/v1/auth/token", {"username": f"guess-{n}", "password": "guess"},
                 format="json", REMOTE_ADDR="198.51.100.45",
                 HTTP_X_FORWARDED_FOR=f"10.9.{n // 250}.{n % 250}").status_code
        for n in range(45)
    ]
    assert codes.count(401) <= 20 and codes[-1] == 429, codes
    assert set(codes) == {401, 429}
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


def test_num_proxies_takes_the_address_the_trusted_proxy_saw(user, api, settings):
    """Behind one proxy (NUM_PROXIES=1) the last X-Forwarded-For entry is the client: forged
    entries before it change nothing, and another real client is counted apart."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.QUICKBG_AUTH_RATE = "3/min"
    codes = [
        api.post("/api/v1/auth/token", {"username": f"g-{n}", "password": "guess"},
                 format="json", REMOTE_ADDR="10.0.0.2",
                 HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.77").status_code
        for n in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    other = api.post("/api/v1/auth/token", {"username": "g", "password": "guess"},
                     format="json", REMOTE_ADDR="10.0.0.2",
                     HTTP_X_FORWARDED_FOR="203.0.113.78")
    assert other.status_code == 401
