"""docker-compose.yml, Dockerfile and Procfile: they parse, and they run what the code provides.

``docker-compose config`` (Debian's ``docker-compose`` package) validates and resolves the file
without a Docker engine; the compose tests skip only when that binary is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class

from tests.helpers import free_port, reap

ROOT = Path(settings.BASE_DIR)
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = {"model", "migrate", "web", "worker"}
SETTINGS_VARS = {
    "DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_REGION_NAME", "SECRET_KEY", "DEBUG",
    "ALLOWED_HOSTS", "QUICKBG_MODELS_DIR", "PORT",
}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (apt-get install docker-compose)",
)


def compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``docker-compose config`` with only the given variables (and no stray .env file)."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        ["docker-compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
    )


@pytest.fixture
def resolved(tmp_path) -> dict:
    result = compose_config(tmp_path, SECRET_KEY="test-secret-key")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def command_line(service: dict) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def settings_env_names() -> set[str]:
    """Every variable quickbg/settings.py reads through its env helpers."""
    source = (ROOT / "quickbg" / "settings.py").read_text()
    return set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', source))


@needs_compose
def test_compose_file_has_every_service(resolved):
    assert set(resolved["services"]) == {
        "postgres", "redis", "minio", "minio-init", "model", "migrate", "web", "worker",
    }
    assert {"postgres-data", "redis-data", "minio-data", "models"} <= set(resolved["volumes"])


@needs_compose
def test_compose_redis_persists_to_an_append_only_file(resolved):
    redis = resolved["services"]["redis"]
    assert "--appendonly yes" in command_line(redis)
    assert any(str(v).endswith(":/data") or ":/data:" in str(v) for v in redis["volumes"])


@needs_compose
def test_compose_creates_the_bucket_the_app_uses(resolved):
    services = resolved["services"]
    init = services["minio-init"]
    assert "mc mb --ignore-existing" in command_line(init)
    assert init["environment"]["BUCKET"] == services["web"]["environment"][
        "AWS_STORAGE_BUCKET_NAME"
    ]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        )
    # The app signs S3 requests with the credentials MinIO was started with.
    web_env, minio_env = services["web"]["environment"], services["minio"]["environment"]
    assert web_env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert web_env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


@needs_compose
def test_compose_fetches_the_model_once_into_a_volume_the_worker_reads(resolved):
    services = resolved["services"]
    model, worker = services["model"], services["worker"]
    assert command_line(model) == "python manage.py fetch_model"
    assert model["environment"]["QUICKBG_MODELS_DIR"] == "/models"
    assert any(str(v).startswith("models:/models") for v in model["volumes"])
    assert any(str(v).startswith("models:/models") for v in worker["volumes"])
    assert worker["environment"]["QUICKBG_MODELS_DIR"] == "/models"
    assert worker["depends_on"]["model"]["condition"] == "service_completed_successfully"
    assert model["restart"] == "no"


@needs_compose
def test_compose_runs_gunicorn_and_the_worker_against_the_same_backends(resolved):
    services = resolved["services"]
    assert "gunicorn quickbg.wsgi" in command_line(services["web"])
    assert command_line(services["worker"]).startswith("python manage.py run_worker")
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert SETTINGS_VARS <= set(env), (name, SETTINGS_VARS - set(env))
        assert env["DEBUG"] == "false"
        # The page and API are reachable over the plain HTTP the file publishes.
        assert env["SECURE_SSL_REDIRECT"] == "false"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env[
            "DATABASE_URL"
        ]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
    envs = [services[name]["environment"] for name in APP_SERVICES]
    assert all(env == envs[0] for env in envs), "app services must share one configuration"


@needs_compose
def test_compose_sets_only_variables_the_settings_read(resolved):
    known = settings_env_names() | {"WEB_CONCURRENCY"}  # gunicorn's own
    assert SETTINGS_VARS <= known  # the variables above really are settings
    for name in APP_SERVICES:
        unknown = set(resolved["services"][name]["environment"]) - known
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


@needs_compose
def test_compose_refuses_to_start_without_a_secret_key(tmp_path):
    result = compose_config(tmp_path)
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


def test_compose_and_procfile_commands_exist():
    commands = get_commands()
    for name in ("fetch_model", "migrate", "run_worker"):
        assert name in commands, name


def test_procfile_names_web_and_worker():
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(lines) == {"web", "worker"}
    web = shlex.split(lines["web"])
    assert web[:2] == ["gunicorn", "quickbg.wsgi"]
    assert "0.0.0.0:$PORT" in web
    worker = shlex.split(lines["worker"])
    assert worker[:3] == ["python", "manage.py", "run_worker"]
    # The worker's arguments are ones run_worker really accepts.
    parser = load_command_class("removal", "run_worker").create_parser("manage.py", "run_worker")
    assert parser.parse_args(worker[3:]).max_jobs == 500


def test_gunicorn_serves_the_page_in_production_mode(tmp_path):
    """The Procfile's web process, as it runs there: gunicorn, DEBUG off, a real HTTP request."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DEBUG": "false",
        "SECRET_KEY": "gunicorn-test-key", "ALLOWED_HOSTS": "127.0.0.1", "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP here, as in docker-compose.yml
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "quickbg.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1"],
        cwd=ROOT, env=env | {"QUICKBG_TEST_RUN": os.environ.get("QUICKBG_TEST_RUN", "")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        response = None
        deadline = time.monotonic() + 30
        while response is None and time.monotonic() < deadline:
            try:
                response = requests.get(
                    f"http://127.0.0.1:{port}/", timeout=5, allow_redirects=False
                )
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert response is not None, "gunicorn did not answer within 30 s"
        assert response.status_code == 200
        assert '<form id="login-form"' in response.text
    finally:
        reap(proc, timeout=10)


def test_dockerfile_installs_what_the_services_need():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert re.search(r"apt-get install[^\n]*\bnodejs\b[^\n]*\bnpm\b", dockerfile)  # fetch_model
    assert "pip install ." in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert "gunicorn quickbg.wsgi" in dockerfile
    assert re.search(r"^USER \w+", dockerfile, re.M), "the app must not run as root"
