"""Sign-in lockout (``accounts.lockout``, django-axes): per username and address, its cool-off,
the trusted proxy's address, its settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.django_db


def admin_login(client, username: str, password: str, address: str, **extra):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password},
                       REMOTE_ADDR=address, **extra)


def test_admin_login_locks_out_a_username_from_an_address(settings):
    from axes.models import AccessAttempt
    from django.test import Client

    from accounts.models import User

    settings.AXES_FAILURE_LIMIT = 5
    User.objects.create_superuser("chief", "chief@example.com", "the-right-password-1")
    client = Client()
    codes = [admin_login(client, "chief", f"wrong-{n}", "192.0.2.60",
                         HTTP_X_FORWARDED_FOR=f"10.1.1.{n}").status_code for n in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # the form again, then the lockout
    attempt = AccessAttempt.objects.get(username="chief")
    assert attempt.ip_address == "192.0.2.60"  # not the forged X-Forwarded-For
    assert attempt.failures_since_start == 5
    # Locked: even the right password is refused from that address, with when to come back.
    locked = admin_login(client, "chief", "the-right-password-1", "192.0.2.60")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 15 * 60
    assert b"Too many failed sign-in attempts" in locked.content
    assert "_auth_user_id" not in client.session
    # The same user from another address is not locked out.
    elsewhere = Client()
    ok = admin_login(elsewhere, "chief", "the-right-password-1", "192.0.2.61")
    assert ok.status_code == 302 and ok["Location"] == "/admin/"


def test_admin_lockout_ends_after_the_cool_off(settings):
    from datetime import timedelta

    from axes.models import AccessAttempt
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User

    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("chief2", "chief2@example.com", "the-right-password-2")
    client = Client()
    for n in range(3):
        admin_login(client, "chief2", f"wrong-{n}", "192.0.2.70")
    assert admin_login(client, "chief2", "the-right-password-2", "192.0.2.70").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert admin_login(client, "chief2", "the-right-password-2", "192.0.2.70").status_code == 302


def test_token_endpoint_signs_in_with_lockout_on_and_locks_out_too(user, api, settings):
    from axes.models import AccessAttempt

    settings.AXES_FAILURE_LIMIT = 3
    good = api.post("/api/v1/auth/token", {"username": user.username, "password": PASSWORD},
                    format="json", REMOTE_ADDR="192.0.2.80")
    assert good.status_code == 200 and good.json()["access"]
    codes = [api.post("/api/v1/auth/token", {"username": user.username, "password": "nope"},
                      format="json", REMOTE_ADDR="192.0.2.80").status_code for _ in range(3)]
    assert codes[:2] == [401, 401] and codes[2] in (401, 429)
    assert AccessAttempt.objects.get(username=user.username).ip_address == "192.0.2.80"
    locked = api.post("/api/v1/auth/token", {"username": user.username, "password": PASSWORD},
                      format="json", REMOTE_ADDR="192.0.2.80")
    assert locked.status_code == 429
    assert locked.json()["detail"].startswith("Too many failed sign-in attempts")
    other = api.post("/api/v1/auth/token", {"username": user.username, "password": PASSWORD},
                     format="json", REMOTE_ADDR="192.0.2.81")
    assert other.status_code == 200


def test_lockout_counts_the_address_the_trusted_proxy_saw(settings):
    from axes.models import AccessAttempt
    from django.test import Client

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    admin_login(Client(), "someone", "wrong", "10.0.0.2",
                HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    assert AccessAttempt.objects.get(username="someone").ip_address == "203.0.113.5"


@pytest.mark.parametrize(("value", "expected"), [
    (None, "[['username', 'ip_address']]"),
    ("ip_address,username+ip_address", "['ip_address', ['username', 'ip_address']]"),
    ("user_name", None),
])
def test_lockout_parameters_come_from_the_environment(value, expected):
    script = ("import django; django.setup()\n"
              "from django.conf import settings; print(settings.AXES_LOCKOUT_PARAMETERS)\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quickbg.settings", "DEBUG": "true"}
    env.pop("QUICKBG_LOGIN_LOCKOUT_BY", None)
    if value is not None:
        env["QUICKBG_LOGIN_LOCKOUT_BY"] = value
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if expected is None:
        assert proc.returncode != 0 and "QUICKBG_LOGIN_LOCKOUT_BY" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == expected


def test_address_lockout_stops_password_spraying_when_chosen(settings):
    from django.test import Client

    settings.AXES_LOCKOUT_PARAMETERS = ["ip_address", ["username", "ip_address"]]
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    codes = [admin_login(client, f"name-{n}", "wrong", "192.0.2.90").status_code
             for n in range(4)]
    assert codes == [200, 200, 429, 429]
