"""The Content-Security-Policy (``quickbg.csp_policy``, ``quickbg.csp``) of the web page, the
admin and the API docs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.django_db


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
