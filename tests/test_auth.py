from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


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
