"""Access control, JWT handling, abuse limits, production settings and log hygiene."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import zlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import jwt
import pytest
from django.core import signing
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken
from rq.job import Job

from quickbg.logs import RedactSecrets
from removal import storage
from removal.models import Task, Upload
from removal.services.tasks import task_enqueue
from tests.factories import PASSWORD, make_task, make_upload
from tests.helpers import named
from tests.images import make_image

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db



def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- JWT ---------------------------------------------------------------------------------------


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


# --- Access: two users over every endpoint -----------------------------------------------------


def test_other_users_objects_are_404_everywhere(user, other_user, client_for):
    theirs = make_task(owner=other_user, status=Task.Status.COMPLETED,
                       result_key="results/theirs.png")
    client = client_for(user)
    for path in (f"/api/v1/tasks/{theirs.pk}", f"/api/v1/tasks/{theirs.pk}/result",
                 f"/api/v1/uploads/{theirs.upload_id}"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/api/v1/tasks/{theirs.pk}/retry").status_code == 404
    assert client.get("/api/v1/tasks").json()["results"] == []
    assert client.get("/api/v1/uploads").json()["results"] == []
    assert client.delete(f"/api/v1/uploads/{theirs.upload_id}").status_code == 404


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


# --- Abuse limits ------------------------------------------------------------------------------


def test_upload_rate_is_throttled_with_retry_after(user, client_for, settings):
    settings.QUICKBG_UPLOAD_RATE = "2/hour"
    client = client_for(user)
    codes = [client.post("/api/v1/uploads", {"file": named(make_image())},
                         format="multipart").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    refused = client.post("/api/v1/uploads", {"file": named(make_image())}, format="multipart")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Task.objects.count() == 2


def test_unfinished_task_cap_is_429_with_retry_after(user, client_for, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    for _ in range(2):
        make_task(owner=user)
    response = client_for(user).post("/api/v1/uploads", {"file": named(make_image())},
                                     format="multipart")
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert "unfinished tasks (limit 2)" in response.json()["detail"]
    assert Upload.objects.count() == 2


def test_more_than_one_file_is_400(user, client_for):
    response = client_for(user).post(
        "/api/v1/uploads", {"file": [named(make_image()), named(make_image())]},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Send one image per request (field 'file')"
    assert Task.objects.count() == 0


# --- Production settings, queue serializer, logs ----------------------------------------------


def test_check_deploy_passes_with_the_documented_production_environment():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quickbg.settings", "DEBUG": "false",
           "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "quickbg.example.com"}
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                           "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.django_db(transaction=True)
def test_queue_stores_jobs_as_json_not_pickle(user, empty_queue):
    task = make_task(owner=user)
    task_enqueue(task=task)
    raw = empty_queue.connection.hget(Job.key_for(Task.objects.get(pk=task.pk).rq_job_id),
                                      "data")
    decoded = json.loads(zlib.decompress(raw))  # RQ compresses; JSON inside, not pickle
    assert decoded[0] == "removal.jobs.process_task"
    assert [str(task.pk)] in decoded


def test_signed_urls_and_tokens_are_redacted_from_logs():
    record = logging.LogRecord(
        "django.server", logging.INFO, __file__, 1,
        '"GET %s HTTP/1.1" 200 -- %s',
        ("/api/v1/files/eyJrIjoicmVzdWx0cy9hLnBuZyJ9:1vN:abc",
         "https://s3/x.png?X-Amz-Credential=AKIA/2026&X-Amz-Signature=deadbeef "
         "Authorization: Bearer eyJ.abc.def"),
        None,
    )
    RedactSecrets().filter(record)
    message = record.getMessage()
    assert "eyJrIjoicmVzdWx0cy9hLnBuZyJ9" not in message and "deadbeef" not in message
    assert "AKIA" not in message and "eyJ.abc.def" not in message
    assert message.count("<redacted>") == 4


def test_request_attached_to_a_log_record_is_redacted():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s",
                               ("/api/v1/files/SECRETTOKEN",), None)
    record.request = "<WSGIRequest: GET '/api/v1/files/SECRETTOKEN'>"
    RedactSecrets().filter(record)
    assert "SECRETTOKEN" not in record.getMessage() and "SECRETTOKEN" not in record.request


def test_every_log_handler_redacts(settings):
    for handler in settings.LOGGING["handlers"].values():
        assert "redact" in handler.get("filters", [])


def test_storage_keys_of_uploads_are_server_chosen(user, client_for):
    response = client_for(user).post(
        "/api/v1/uploads", {"file": named(make_image(), "../../etc/passwd.jpg")},
        format="multipart",
    )
    assert response.status_code == 202
    upload = Upload.objects.get(pk=response.json()["upload_id"])
    assert upload.original_key.startswith(f"originals/{user.pk}/{upload.pk}/")
    assert ".." not in upload.original_key
    assert make_upload  # factories imported for other tests in this module


def test_token_requests_are_throttled_per_address(user, api, settings):
    settings.QUICKBG_AUTH_RATE = "3/hour"
    codes = [api.post("/api/v1/auth/token", {"username": user.username, "password": "guess"},
                      format="json", REMOTE_ADDR="203.0.113.9").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    elsewhere = api.post("/api/v1/auth/token", {"username": user.username, "password": "x"},
                         format="json", REMOTE_ADDR="203.0.113.10")
    assert elsewhere.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_presign_is_capped_per_user(user, client_for, s3, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 2
    client = client_for(user)
    codes = [client.post("/api/v1/uploads/presign", {"filename": "a.jpg"},
                         format="json").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_json_upload_options_accept_booleans(user, client_for):
    from removal.models import DirectUpload

    key = f"incoming/{user.pk}/abc/photo.jpg"
    DirectUpload.objects.create(owner=user, key=key)
    response = client_for(user).post(
        "/api/v1/uploads", {"s3_key": key, "crop": False, "refine": True, "crop_margin": 4},
        format="json",
    )
    # The key was issued but nothing was uploaded: the options themselves were accepted.
    assert response.status_code == 404
    assert response.json()["detail"] == "Nothing has been uploaded to this s3_key yet"


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


# --- Sign-in lockout (django-axes) -------------------------------------------------------------


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


# --- Content-Security-Policy --------------------------------------------------------------------


def csp_of(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_web_page_has_a_strict_content_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    policy = csp_of(response)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    # Nothing inline in the page for the policy to refuse: no <script> body, no style, no on*.
    html = response.content.decode()
    import re

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)


def test_admin_has_a_content_security_policy_allowing_only_its_known_inline_script(
    client, settings
):
    import base64
    import hashlib
    import re

    from accounts.models import User

    admin = User.objects.create_superuser("csp", "csp@example.com", "csp-password-123")
    client.force_login(admin)
    login = csp_of(client.get("/admin/login/"))
    assert "'unsafe-inline'" not in login["script-src"]
    assert login["default-src"] == ["'self'"]
    # django-rq's job list has one inline script: its exact hash is what the policy allows.
    response = client.get("/admin/rq/queues/0/")
    assert response.status_code == 200
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", response.content.decode(), re.S)
    inline = [body for body in scripts if body.strip()]
    assert inline, "django-rq's page has no inline script any more: drop its hash"
    allowed = csp_of(response)["script-src"]
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed


def test_api_docs_are_served_from_this_origin(client):
    import re

    for path in ("/api/v1/docs", "/api/v1/redoc"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(src.startswith("/") for src in sources), (path, sources)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert any("drf_spectacular_sidecar" in src for src in sources), (path, sources)
    script = client.get("/api/v1/docs?script=")
    assert script["Content-Type"] == "application/javascript"
    assert b"SwaggerUIBundle" in script.content


def test_lockout_counts_the_address_the_trusted_proxy_saw(settings):
    from axes.models import AccessAttempt
    from django.test import Client

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    admin_login(Client(), "someone", "wrong", "10.0.0.2",
                HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    assert AccessAttempt.objects.get(username="someone").ip_address == "203.0.113.5"


def test_result_images_from_the_s3_endpoint_are_allowed_by_the_policy():
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "print(' '.join(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src']))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quickbg.settings", "DEBUG": "true",
           "AWS_STORAGE_BUCKET_NAME": "pics", "AWS_S3_ENDPOINT_URL": "https://s3.example.net:9000",
           "QUICKBG_CSP_IMG_SRC": "https://cdn.example.net"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["'self'", "data:", "blob:", "https://s3.example.net:9000",
                                   "https://cdn.example.net"]


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
