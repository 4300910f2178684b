"""Start-up refuses bad configuration with a message naming the variable; the documented
production environment passes ``check --deploy``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage_check(**env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in env or env[k] is not None}
    full_env.update({k: v for k, v in env.items() if v is not None})
    full_env["DJANGO_SETTINGS_MODULE"] = "quickbg.settings"
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("QUICKBG_MAX_UPLOAD_MB", "ten", "QUICKBG_MAX_UPLOAD_MB must be a number"),
        ("QUICKBG_JOB_TIMEOUT", "5m", "QUICKBG_JOB_TIMEOUT must be an integer"),
        ("PORT", "0", "PORT must be >= 1"),
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("DATABASE_URL", "nosuchdb://x", "DATABASE_URL is not a valid database URL"),
        # integers with bounds
        ("PORT", "70000", "PORT must be <= 65535"),
        ("QUICKBG_MAX_DIMENSION", "-5", "QUICKBG_MAX_DIMENSION must be >= 1"),
        ("QUICKBG_MIN_DIMENSION", "5000",
         "QUICKBG_MIN_DIMENSION (5000) must not exceed QUICKBG_MAX_DIMENSION (4096)"),
        # booleans
        ("SECURE_PROXY_SSL_HEADER", "sometimes", "SECURE_PROXY_SSL_HEADER must be a boolean"),
        # DRF rates: checked here, not on the first request
        ("QUICKBG_UPLOAD_RATE", "abc", "QUICKBG_UPLOAD_RATE must be a rate like 60/min"),
        ("QUICKBG_AUTH_RATE", "5/fortnight", "QUICKBG_AUTH_RATE must be a rate like 60/min"),
        ("QUICKBG_AUTH_RATE", "0/min", "QUICKBG_AUTH_RATE must allow at least 1 request"),
        # choices name the allowed values
        ("QUICKBG_MODEL", "foo",
         "QUICKBG_MODEL must be one of isnet-general-use, isnet-general-use-quant, u2net, "),
        ("LOG_LEVEL", "LOUD",
         "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got 'LOUD'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of plain, json; got 'xml'"),
        # URLs
        ("REDIS_URL", "localhost:6379",
         "REDIS_URL must be a URL starting with redis:// or rediss:// or unix://"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "REDIS_URL is not a valid URL"),
        ("CSRF_TRUSTED_ORIGINS", "https://ok.example,bad.example",
         "CSRF_TRUSTED_ORIGINS must be a URL starting with http:// or https://; "
         "got 'bad.example'"),
        # lists
        ("QUICKBG_WEBHOOK_RETRY_DELAYS", "10,soon",
         "QUICKBG_WEBHOOK_RETRY_DELAYS must be comma-separated seconds, e.g. 10,60,300"),
        ("QUICKBG_WEBHOOK_RETRY_DELAYS", "10,-5",
         "QUICKBG_WEBHOOK_RETRY_DELAYS must not hold a negative delay"),
        ("QUICKBG_LOGIN_LOCKOUT_BY", "email",
         "QUICKBG_LOGIN_LOCKOUT_BY must list username, ip_address or username+ip_address"),
        # ONNX Runtime providers
        ("QUICKBG_ORT_PROVIDERS", "CUDAExcutionProvider",
         "QUICKBG_ORT_PROVIDERS: unknown provider CUDAExcutionProvider; onnxruntime knows"),
        ("QUICKBG_ORT_PROVIDERS", "CoreMLExecutionProvider",  # macOS only
         "QUICKBG_ORT_PROVIDERS: none of CoreMLExecutionProvider is available in this "
         "onnxruntime installation (available: "),
    ],
)
def test_bad_value_stops_startup_naming_the_variable(var, value, message):
    proc = manage_check(**{var: value})
    assert proc.returncode != 0
    assert message in proc.stderr


def test_secret_key_is_required_when_debug_is_off():
    proc = manage_check(DEBUG="false", SECRET_KEY="", ALLOWED_HOSTS="example.com")
    assert proc.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in proc.stderr


def test_good_production_environment_starts():
    proc = manage_check(DEBUG="false", SECRET_KEY="x" * 60, ALLOWED_HOSTS="example.com")
    assert proc.returncode == 0, proc.stderr


def test_s3_settings_are_checked_when_a_bucket_is_set():
    proc = manage_check(AWS_STORAGE_BUCKET_NAME="b", AWS_S3_ENDPOINT_URL="minio:9000")
    assert proc.returncode != 0
    assert "AWS_S3_ENDPOINT_URL must be a URL starting with http:// or https://" in proc.stderr
    proc = manage_check(AWS_STORAGE_BUCKET_NAME="b", AWS_S3_ADDRESSING_STYLE="sideways")
    assert proc.returncode != 0
    assert "AWS_S3_ADDRESSING_STYLE must be one of path, virtual, auto" in proc.stderr


def manage_shell(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in env}
    full_env.update({k: v for k, v in env.items() if v is not None})
    full_env.update(DJANGO_SETTINGS_MODULE="quickbg.settings", DEBUG="true")
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_s3_variables_reach_the_storage_backend_and_the_image_policy():
    """django-storages takes its options from the AWS_* settings the variables become."""
    proc = manage_shell(
        "from django.conf import settings as s; "
        "from django.core.files.storage import default_storage as d; "
        "b = d.bucket_name; "
        "print(type(d._wrapped).__name__, b, d.endpoint_url, d.region_name, "
        "d.access_key, d.verify, d.addressing_style, d.signature_version, d.file_overwrite, "
        "d.querystring_auth, s.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src'][-1])",
        AWS_STORAGE_BUCKET_NAME="results", AWS_S3_ENDPOINT_URL="https://127.0.0.1:9000",
        AWS_S3_REGION_NAME="eu-west-1", AWS_ACCESS_KEY_ID="app", AWS_SECRET_ACCESS_KEY="s",
        AWS_S3_VERIFY="/proxy-ca/root.crt", AWS_S3_ADDRESSING_STYLE="virtual",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-11:] == [
        "S3Storage", "results", "https://127.0.0.1:9000", "eu-west-1", "app",
        "/proxy-ca/root.crt", "virtual", "s3v4", "True", "True", "https://127.0.0.1:9000",
    ]
    proc = manage_shell("from django.core.files.storage import default_storage as d; "
                        "print(d.verify)", AWS_STORAGE_BUCKET_NAME="results", AWS_S3_VERIFY="off")
    assert proc.stdout.split()[-1] == "False", proc.stderr


def test_good_values_are_accepted_and_normalised():
    proc = manage_shell(
        "from django.conf import settings as s; "
        "print(s.QUICKBG_UPLOAD_RATE, s.QUICKBG_AUTH_RATE, s.LOG_LEVEL, s.QUICKBG_MODEL, "
        "s.QUICKBG_ORT_PROVIDERS)",
        QUICKBG_UPLOAD_RATE=" 5 / Seconds ", QUICKBG_AUTH_RATE="100/day", LOG_LEVEL="warning",
        QUICKBG_MODEL="ISNET-general-use-quant", QUICKBG_ORT_PROVIDERS="cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-5:] == [
        "5/seconds", "100/day", "WARNING", "isnet-general-use-quant", "['CPUExecutionProvider']"
    ]


def test_hand_run_commands_find_make_runs_redis_in_the_state_dir(tmp_path):
    """REDIS_URL unset: the URL `make run` kept in <state>/redis-url; REDIS_URL set: that."""
    code = "from django.conf import settings; print(settings.REDIS_URL)"
    state = {"QUICKBG_STATE_DIR": str(tmp_path)}
    proc = manage_shell(code, REDIS_URL=None, **state)
    assert proc.stdout.split()[-1] == "redis://127.0.0.1:6379/0", proc.stderr
    (tmp_path / "redis-url").write_text("redis://127.0.0.1:45678/0\n")
    proc = manage_shell(code, REDIS_URL=None, **state)
    assert proc.stdout.split()[-1] == "redis://127.0.0.1:45678/0", proc.stderr
    proc = manage_shell(code, REDIS_URL="redis://127.0.0.1:6380/1", **state)
    assert proc.stdout.split()[-1] == "redis://127.0.0.1:6380/1", proc.stderr
    (tmp_path / "redis-url").write_text("garbage\n")
    proc = manage_shell(code, REDIS_URL=None, **state)
    assert proc.returncode != 0
    assert f"REDIS_URL (read from {tmp_path / 'redis-url'}) must be a URL" in proc.stderr


# Two writers that each read, think, then write inside a transaction: SQLite's default
# (DEFERRED) transactions make one of them fail at once with "database is locked"; the local
# default (IMMEDIATE, WAL, busy timeout) makes the second wait for the first.
CONCURRENT_WRITERS = """
import threading, time
from django.db import connection, transaction
from accounts.models import User
errors = []
def writer(n):
    try:
        with transaction.atomic():
            User.objects.count()
            time.sleep(0.5)
            User.objects.create(username=f"writer-{n}")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
cursor = connection.cursor()
cursor.execute("PRAGMA journal_mode")
print("journal", cursor.fetchone()[0])
print("users", User.objects.filter(username__startswith="writer-").count())
print("errors", errors)
"""


def test_local_sqlite_queues_concurrent_writers_instead_of_failing(tmp_path):
    state = {"QUICKBG_STATE_DIR": str(tmp_path), "DATABASE_URL": None}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, capture_output=True,
        text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
             "DJANGO_SETTINGS_MODULE": "quickbg.settings", "DEBUG": "true", **{
                 k: v for k, v in state.items() if v is not None}},
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "quickbg.sqlite3").is_file()
    proc = manage_shell(CONCURRENT_WRITERS, **state)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "journal wal" in lines
    assert "users 4" in lines
    assert "errors []" in lines


def test_check_deploy_passes_with_the_documented_production_environment():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quickbg.settings", "DEBUG": "false",
           "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "quickbg.example.com"}
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                           "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
