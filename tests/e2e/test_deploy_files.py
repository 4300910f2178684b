"""docker-compose.yml, .env.example, the Dockerfile, the Procfile, the lock files and deploy/.

``docker-compose config`` (Debian's ``docker-compose`` package) validates and resolves the compose
file without a Docker engine; Debian's ``caddy`` and ``nginx`` check and run the proxy configs.
Each such test skips only when its binary is missing (.ci/run installs all three).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.test import Client

from tests.helpers import free_port

ROOT = Path(settings.BASE_DIR)
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = {"model", "migrate", "web", "worker"}
SETTINGS_VARS = {
    "DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_REGION_NAME", "SECRET_KEY", "DEBUG",
    "ALLOWED_HOSTS", "QUICKBG_MODELS_DIR", "PORT",
}
# Variables gunicorn's config reads, not Django's settings.
GUNICORN_VARS = {"WEB_CONCURRENCY", "WEB_THREADS", "WEB_TIMEOUT", "HOST", "PORT"}
# Secrets compose must never default: each one is ${NAME:?...}.
SECRETS = {
    "SECRET_KEY": "sk-7f3a91c0d2", "POSTGRES_PASSWORD": "pg-5b8e2d7a41",
    "REDIS_PASSWORD": "rd-c94e1f0a37", "MINIO_ROOT_PASSWORD": "mr-2d6b9e8c10",
    "S3_APP_SECRET_KEY": "as-8a1f4c7e55",
}
REQUIRED = [*SECRETS, "MINIO_ROOT_USER", "S3_APP_ACCESS_KEY", "ALLOWED_HOSTS"]
SAMPLE_ENV = {
    **SECRETS,
    "MINIO_ROOT_USER": "root-admin", "S3_APP_ACCESS_KEY": "quickbg-app",
    "ALLOWED_HOSTS": "quickbg.localhost,127.0.0.1",
    # Settings that only reach the containers through env_file.
    "CSRF_TRUSTED_ORIGINS": "https://quickbg.example.com", "QUICKBG_METRICS_TOKEN": "mt-0c1d2e3f",
    "LOG_LEVEL": "DEBUG", "QUICKBG_MAX_UPLOAD_MB": "8", "QUICKBG_UPLOAD_RATE": "30/min",
    "JWT_ACCESS_SECONDS": "600", "JWT_REFRESH_SECONDS": "7200", "QUICKBG_MAX_QUEUED_TASKS": "5",
}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (apt-get install docker-compose)",
)
needs_caddy = pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``docker-compose config`` as an operator runs it: the compose file beside a ``.env``
    holding ``env`` (read for substitution and as the containers' env_file), nothing else set."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    return subprocess.run(
        ["docker-compose", "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )


def render(tmp_path: Path, **extra: str) -> dict:
    result = compose_config(tmp_path, {**SAMPLE_ENV, **extra})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture
def resolved(tmp_path) -> dict:
    return render(tmp_path)


def command_line(service: dict) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def settings_env_names() -> set[str]:
    """Every variable the settings read through the env helpers (in quickbg/settings.py and
    quickbg/backends.py, which builds the database, Redis and queue settings)."""
    source = "".join((ROOT / "quickbg" / name).read_text() for name in ("settings.py",
                                                                          "backends.py"))
    return set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', source))


def env_example_names() -> set[str]:
    """Variables .env.example sets or shows commented out (``# NAME=``)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))


def seconds(duration: str) -> int:
    """Compose durations: ``330s``, ``5m30s``, ``1h``."""
    total = 0
    for amount, unit in re.findall(r"(\d+)([hms])", str(duration)):
        total += int(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


# --- Compose: secrets and exposure (issue 14) ----------------------------------------------------


@needs_compose
def test_compose_file_has_every_service(resolved):
    assert set(resolved["services"]) == {
        "postgres", "redis", "minio", "minio-init", "proxy", "model", "migrate", "web", "worker",
    }
    assert {"postgres-data", "redis-data", "minio-data", "caddy-data", "proxy-ca", "models"} <= set(
        resolved["volumes"]
    )


@needs_compose
@pytest.mark.parametrize("name", REQUIRED)
def test_compose_refuses_to_start_without_each_secret(tmp_path, name):
    env = {key: value for key, value in SAMPLE_ENV.items() if key != name}
    result = compose_config(tmp_path, env)
    assert result.returncode != 0
    assert f"set {name}" in result.stderr


def test_compose_file_defaults_no_secret():
    text = COMPOSE.read_text()
    for name in [*SECRETS, "MINIO_ROOT_USER", "S3_APP_ACCESS_KEY"]:
        uses = re.findall(r"\$\{" + name + r"(:?[-?=+]?)", text)
        assert uses, f"{name} is not used"
        assert set(uses) == {":?"}, f"{name} must be required (${{{name}:?...}}), not defaulted"
    assert "quickbg-secret" not in text and "minioadmin" not in text
    # Every secret-named entry takes its value from .env (or is blanked for the app).
    entries = re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|AUTH)[A-Z_]*):\s*(.*)$", text, re.M)
    assert len(entries) >= 6
    for key, value in entries:
        assert value.startswith("${") or value == '""', (key, value)
    assert not re.search(r"://[^/@\s$]*:[^/@\s$]+@", text), "a literal password in a URL"


@needs_compose
def test_rendered_compose_carries_only_the_secrets_given(resolved):
    """Every password-like value in the resolved file is one the operator supplied (or blank)."""
    given = set(SECRETS.values())
    found = []

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
        elif isinstance(node, str):
            if re.search(r"PASSWORD|SECRET|AUTH", key) and node:
                found.append((key, node))
            for userinfo in re.findall(r"[a-z]+://[^/@\s]*:([^/@\s]+)@", node):
                found.append((key, userinfo))

    walk(resolved["services"])
    assert found, "no secrets were rendered at all"
    assert {value for _key, value in found} <= given, found
    text = yaml.safe_dump(resolved)
    assert "quickbg-secret" not in text


@needs_compose
def test_app_uses_a_bucket_scoped_user_never_minio_root(resolved):
    services = resolved["services"]
    init, minio = services["minio-init"], services["minio"]
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["MINIO_ROOT_PASSWORD"]
    bucket = init["environment"]["BUCKET"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["AWS_ACCESS_KEY_ID"] == SAMPLE_ENV["S3_APP_ACCESS_KEY"]
        assert env["AWS_SECRET_ACCESS_KEY"] == SECRETS["S3_APP_SECRET_KEY"]
        assert env["AWS_STORAGE_BUCKET_NAME"] == bucket
        # .env holds the root credentials; the app containers get them blanked.
        assert env["MINIO_ROOT_USER"] == env["MINIO_ROOT_PASSWORD"] == ""
        assert SECRETS["MINIO_ROOT_PASSWORD"] not in env.values()
    assert init["environment"]["APP_ACCESS_KEY"] == SAMPLE_ENV["S3_APP_ACCESS_KEY"]
    assert init["environment"]["APP_SECRET_KEY"] == SECRETS["S3_APP_SECRET_KEY"]
    script = command_line(init)
    assert "mc mb --ignore-existing" in script and "mc anonymous set none" in script
    assert 'mc admin user add root "$$APP_ACCESS_KEY" "$$APP_SECRET_KEY"' in script
    assert "mc admin policy attach root quickbg-app --user" in script
    # The policy names the app's bucket and nothing else.
    template = re.search(r"printf '(.*?)'", script, re.S)[1]
    policy = json.loads(template.replace("%s", bucket))
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert not any(a in ("s3:*", "*") or a.startswith("admin:") for a in actions)
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        )


@needs_compose
def test_minio_init_creates_the_incoming_lifecycle_rule(tmp_path):
    init = render(tmp_path, INCOMING_EXPIRE_DAYS="3")["services"]["minio-init"]
    assert init["environment"]["INCOMING_EXPIRE_DAYS"] == "3"
    assert (
        'mc ilm rule add --prefix incoming/ --expire-days "$$INCOMING_EXPIRE_DAYS" "root/$$BUCKET"'
        in re.sub(r"\s+", " ", command_line(init))
    )


@needs_compose
def test_only_the_proxy_is_published_on_the_bind_address(tmp_path):
    services = render(tmp_path, BIND_ADDRESS="127.0.0.2", HTTPS_PORT="9443")["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"proxy"}, published
    (port,) = published["proxy"]
    # The same port inside and out: links are signed for PUBLIC_HOST:HTTPS_PORT.
    assert str(port) in ("127.0.0.2:9443:9443/tcp", "127.0.0.2:9443:9443")
    assert services["proxy"]["networks"]["default"]["aliases"] == ["quickbg.localhost"]


@needs_compose
def test_compose_redis_has_a_password_and_persists(resolved):
    services = resolved["services"]
    redis = services["redis"]
    line = command_line(redis)
    assert "--appendonly yes" in line
    assert '--requirepass "$$REDISCLI_AUTH"' in line
    assert redis["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]
    assert "ports" not in redis
    assert any(str(v).startswith("redis-data:/data") for v in redis["volumes"])
    for name in APP_SERVICES:
        assert services[name]["environment"]["REDIS_URL"] == (
            f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
        )


# --- Compose: configuration through .env (issue 16) --------------------------------------------


@needs_compose
def test_env_file_settings_reach_web_and_worker(tmp_path):
    services = render(tmp_path, NUM_PROXIES="2")["services"]
    passed = {k: v for k, v in SAMPLE_ENV.items() if k not in SECRETS and k not in REQUIRED}
    assert passed
    for name in ("web", "worker"):
        env = services[name]["environment"]
        for key, value in passed.items():
            assert env.get(key) == value, (name, key)
        assert env["NUM_PROXIES"] == "2"
        assert env["ALLOWED_HOSTS"] == SAMPLE_ENV["ALLOWED_HOSTS"]
        assert env["DATABASE_URL"] == (
            f"postgres://quickbg:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/quickbg"
        )
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == (
        SECRETS["POSTGRES_PASSWORD"]
    )


def test_env_example_documents_what_operators_set():
    names = env_example_names()
    assert {
        "NUM_PROXIES", "CSRF_TRUSTED_ORIGINS", "QUICKBG_METRICS_TOKEN", "LOG_LEVEL",
        "QUICKBG_MAX_UPLOAD_MB", "QUICKBG_UPLOAD_RATE", "QUICKBG_MAX_QUEUED_TASKS",
        "JWT_ACCESS_SECONDS", "JWT_REFRESH_SECONDS", "ALLOWED_HOSTS", "POSTGRES_PASSWORD",
        "QUICKBG_ORT_THREADS", "QUICKBG_JOB_TIMEOUT", "WORKER_STOP_GRACE", "WEB_CONCURRENCY",
        "WEB_THREADS", *REQUIRED,
    } <= names
    # Every ${VAR} of the compose file is explained there ...
    assert compose_variables() <= names, compose_variables() - names
    # ... and every name there means something: a setting, gunicorn's, or the compose file's.
    unknown = names - settings_env_names() - GUNICORN_VARS - compose_variables()
    assert not unknown, f".env.example names variables nothing reads: {unknown}"
    # No secret is filled in.
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    assert all(values[name] == "" for name in SECRETS)


@needs_compose
def test_env_example_with_its_secrets_filled_in_is_a_working_configuration(tmp_path):
    text = ENV_EXAMPLE.read_text()
    for name, value in SECRETS.items():
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.M)
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(text)
    result = subprocess.run(["docker-compose", "config"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    web = yaml.safe_load(result.stdout)["services"]["web"]["environment"]
    assert web["AWS_S3_ENDPOINT_URL"] == "https://quickbg.localhost:8443"
    assert web["ALLOWED_HOSTS"] == "quickbg.localhost,127.0.0.1"


@needs_compose
def test_worker_stop_grace_follows_the_job_timeout(tmp_path):
    default_timeout = int(re.search(
        r'env_int\("QUICKBG_JOB_TIMEOUT", (\d+)', (ROOT / "quickbg/settings.py").read_text()
    )[1])
    worker = render(tmp_path)["services"]["worker"]
    assert seconds(worker["stop_grace_period"]) >= default_timeout + 30
    # .env.example keeps the documented relation.
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    assert seconds(values["WORKER_STOP_GRACE"]) == int(values["QUICKBG_JOB_TIMEOUT"]) + 30
    # Set together in .env, both reach the worker.
    worker = render(tmp_path, QUICKBG_JOB_TIMEOUT="900", WORKER_STOP_GRACE="930s")["services"][
        "worker"
    ]
    assert worker["environment"]["QUICKBG_JOB_TIMEOUT"] == "900"
    assert seconds(worker["stop_grace_period"]) == 930


@needs_compose
def test_compose_ort_threads_default_fits_any_scale_up_to_the_cores(resolved):
    for name in ("worker", "web"):
        threads = int(resolved["services"][name]["environment"]["QUICKBG_ORT_THREADS"])
        # 0 means "all cores": two workers would then use 2 x cores threads.
        assert threads == 1
    cores = os.cpu_count() or 1
    assert all(workers * threads <= cores for workers in range(1, cores + 1))


@needs_compose
def test_compose_app_runs_https_behind_one_proxy_on_one_origin(tmp_path):
    services = render(tmp_path, PUBLIC_HOST="bg.example.org", HTTPS_PORT="443")["services"]
    proxy = services["proxy"]
    assert proxy["environment"]["PUBLIC_HOST"] == "bg.example.org"
    assert proxy["networks"]["default"]["aliases"] == ["bg.example.org"]
    assert any("deploy/Caddyfile:/etc/caddy/Caddyfile" in str(v) for v in proxy["volumes"])
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DEBUG"] == "false"
        assert env["SECURE_PROXY_SSL_HEADER"] == "true"
        assert env["SECURE_SSL_REDIRECT"] == "true"
        assert env["QUICKBG_INSECURE_HTTP"] == "false"
        assert env["NUM_PROXIES"] == "1"
        # Download links are signed for the public origin the proxy serves, never :9000.
        assert env["AWS_S3_ENDPOINT_URL"] == "https://bg.example.org:443"
        assert env["AWS_S3_VERIFY"] == "/proxy-ca/root.crt"
    for name in ("web", "worker"):
        assert "proxy-ca:/proxy-ca:ro" in services[name]["volumes"]
        assert services[name]["depends_on"]["proxy"]["condition"] == "service_healthy"


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
    assert command_line(services["web"]) == (
        "gunicorn quickbg.wsgi --config deploy/gunicorn.conf.py"
    )
    assert command_line(services["worker"]).startswith("python manage.py run_worker")
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert SETTINGS_VARS <= set(env), (name, SETTINGS_VARS - set(env))
        assert env["WEB_CONCURRENCY"] == "2" and env["WEB_THREADS"] == "8"
    envs = [services[name]["environment"] for name in APP_SERVICES]
    assert all(env == envs[0] for env in envs), "app services must share one configuration"


def test_compose_sets_only_variables_the_settings_read():
    """The compose file's own ``environment:`` for the app (not .env) names real settings."""
    app = yaml.safe_load(COMPOSE.read_text())["x-app"]
    assert app["env_file"] == ".env"
    known = settings_env_names() | GUNICORN_VARS
    assert SETTINGS_VARS <= known  # the variables above really are settings
    blanked = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    unknown = set(app["environment"]) - known - blanked
    assert not unknown, f"the app's environment sets variables no setting reads: {unknown}"
    assert all(app["environment"][name] == "" for name in blanked)


# --- .dockerignore, lock files, Dockerfile (issues 14 and 16) ----------------------------------


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    from fnmatch import fnmatch

    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pattern) or fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", [
    ".env", ".env.production", "var/quickbg.sqlite3", "var/demo-password", ".venv/bin/python",
    ".git/config", "models/isnet.onnx", "removal/__pycache__/x.pyc",
])
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image(path):
    assert dockerignored(path)


@pytest.mark.parametrize("path", [
    ".env.example", "requirements.lock", "manage.py", "deploy/gunicorn.conf.py",
    "removal/models.py",
])
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not dockerignored(path)


def test_lock_files_pin_every_dependency_with_hashes():
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import check_lock
    finally:
        sys.path.pop(0)
    assert check_lock.problems() == []
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / name).read_text()
        pins = re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", text, re.M)
        assert len(pins) > 40, name
        # Every requirement line is an exact pin followed by at least one sha256.
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2] if text.startswith("#")
                          else text)
        for block in blocks:
            if not block.strip() or block.lstrip().startswith("#"):
                continue
            assert re.match(r"^[A-Za-z0-9][\w.-]*==\S+", block), block[:80]
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block[:80]
    # The dev lock runs what the image runs: shared packages have the same version.
    runtime = dict(re.findall(r"^([\w.-]+)==([^\s;]+)(?!.*>= '3\.12')", (
        ROOT / "requirements.lock").read_text(), re.M))
    dev = dict(re.findall(r"^([\w.-]+)==([^\s;]+)(?!.*>= '3\.12')", (
        ROOT / "requirements-dev.lock").read_text(), re.M))
    assert {k: v for k, v in runtime.items() if dev.get(k) != v} == {}


def test_check_lock_catches_a_dependency_added_without_relocking(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import check_lock
    finally:
        sys.path.pop(0)
    for name in ("requirements.lock", "requirements-dev.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    project = (ROOT / "pyproject.toml").read_text().replace(
        'dependencies = [\n', 'dependencies = [\n    "not-in-the-lock>=8",\n', 1
    ).replace('"gunicorn>=23"', '"gunicorn>=99"')
    (tmp_path / "pyproject.toml").write_text(project)
    monkeypatch.setattr(check_lock, "ROOT", tmp_path)
    found = check_lock.problems()
    assert any("'not-in-the-lock>=8' is not pinned" in line for line in found)
    assert any("gunicorn==" in line and "'gunicorn>=99'" in line for line in found)


def test_makefile_installs_from_the_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", makefile, re.M)
    assert install, "no install recipe"
    recipe = install[1]
    assert "pip install --quiet --require-hashes --no-deps -r requirements-dev.lock" in recipe
    assert "deploy/check_lock.py" in recipe
    assert not re.search(r"pip install[^\n]*-e", recipe), "installs outside the lock"
    assert "requirements-dev.lock" in makefile.split("$(STAMP):", 1)[1].split("\n", 1)[0]
    assert re.search(r"^lock:", makefile, re.M)
    assert "--generate-hashes" in makefile


def test_dockerfile_installs_from_the_lock_on_a_pinned_base():
    dockerfile = (ROOT / "Dockerfile").read_text()
    # An exact release (3.11.N) of the base image, not a moving tag.
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?( AS \w+)?$",
                     dockerfile, re.M)
    assert "COPY requirements.lock" in dockerfile
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert not re.search(r"pip install \.", dockerfile)
    assert re.search(r"apt-get install[^\n]*\bnodejs\b[^\n]*\bnpm\b", dockerfile)  # fetch_model
    assert "collectstatic --noinput" in dockerfile
    assert 'CMD ["gunicorn", "quickbg.wsgi", "--config", "deploy/gunicorn.conf.py"]' in dockerfile
    assert re.search(r"^USER \w+", dockerfile, re.M), "the app must not run as root"


# --- Procfile and gunicorn (issue 17) -----------------------------------------------------------


def test_compose_and_procfile_commands_exist():
    commands = get_commands()
    for name in ("fetch_model", "migrate", "run_worker"):
        assert name in commands, name


def test_procfile_names_web_and_worker():
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(lines) == {"web", "worker"}
    assert shlex.split(lines["web"]) == [
        "gunicorn", "quickbg.wsgi", "--config", "deploy/gunicorn.conf.py",
    ]
    worker = shlex.split(lines["worker"])
    assert worker[:3] == ["python", "manage.py", "run_worker"]
    # The worker's arguments are ones run_worker really accepts.
    parser = load_command_class("removal", "run_worker").create_parser("manage.py", "run_worker")
    assert parser.parse_args(worker[3:]).max_jobs == 500


def gunicorn_config(env: dict[str, str]) -> dict:
    """The settings gunicorn itself derives from deploy/gunicorn.conf.py under ``env``."""
    code = (
        "import json, sys; from gunicorn.app.wsgiapp import WSGIApplication; "
        "sys.argv = ['gunicorn', 'quickbg.wsgi', '--config', 'deploy/gunicorn.conf.py']; "
        "c = WSGIApplication().cfg; "
        "print(json.dumps({'worker_class': c.worker_class_str, 'workers': c.workers, "
        "'threads': c.threads, 'bind': c.bind, 'timeout': c.timeout}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gunicorn_config_is_gthread_sized_from_the_environment():
    assert gunicorn_config({"PORT": "8123", "WEB_CONCURRENCY": "3", "WEB_THREADS": "6"}) == {
        "worker_class": "gthread", "workers": 3, "threads": 6, "bind": ["0.0.0.0:8123"],
        "timeout": 120,
    }
    defaults = gunicorn_config({})
    assert (defaults["workers"], defaults["threads"], defaults["bind"]) == (2, 8, ["0.0.0.0:8000"])


def test_gunicorn_config_refuses_a_bad_size():
    code = "import runpy; runpy.run_path('deploy/gunicorn.conf.py')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "WEB_THREADS": "x"})
    assert result.returncode != 0
    assert "WEB_THREADS must be an integer" in result.stderr


def start_gunicorn(tmp_path, port: int, **env: str) -> subprocess.Popen:
    """The Procfile's web command, as it runs there: gunicorn with the shared config."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DEBUG": "false",
        "SECRET_KEY": "gunicorn-test-key", "ALLOWED_HOSTS": "127.0.0.1", "PORT": str(port),
        "HOST": "127.0.0.1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_CONCURRENCY": "1", "WEB_THREADS": "4",
    }
    web = shlex.split(dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )["web"])
    return subprocess.Popen(
        [sys.executable, "-m", *web], cwd=ROOT, env={**base, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 30, **kwargs) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=5, allow_redirects=False, **kwargs)
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_gunicorn_serves_the_page_in_explicit_plain_http_mode(tmp_path):
    """The Procfile's web process: gunicorn, DEBUG off, plain HTTP chosen explicitly."""
    port = free_port()
    proc = start_gunicorn(tmp_path, port, QUICKBG_INSECURE_HTTP="true")
    try:
        response = wait_for(f"http://127.0.0.1:{port}/", proc)
        assert response.status_code == 200
        assert '<form id="login-form"' in response.text
    finally:
        stop(proc)
    assert "QUICKBG_INSECURE_HTTP=true: serving plain HTTP" in proc.stdout.read()


def test_gunicorn_keeps_answering_while_a_client_uploads_slowly(tmp_path):
    """One process: a client trickling a request body holds one thread, not the process."""
    import socket

    port = free_port()
    proc = start_gunicorn(tmp_path, port, QUICKBG_INSECURE_HTTP="true")
    slow = socket.socket()
    try:
        wait_for(f"http://127.0.0.1:{port}/api/v1/health", proc)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        time.sleep(0.5)  # the request is now in a worker thread, waiting for its body
        t0 = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - t0 < 2
    finally:
        slow.close()
        stop(proc)


# --- TLS posture and the admin sign-in (issue 16) ------------------------------------------------

SETTINGS_DUMP = """
import json, django
from django.conf import settings as s
django.setup()
print(json.dumps({name: getattr(s, name, None) for name in (
    "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "NUM_PROXIES", "AWS_S3_ENDPOINT_URL",
    "AWS_S3_VERIFY")}))
"""


def settings_under(env: dict[str, str]) -> tuple[dict, str]:
    """quickbg.settings as a process with exactly ``env`` loads them (nothing is connected)."""
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_DUMP], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                         "DJANGO_SETTINGS_MODULE": "quickbg.settings",
                         "QUICKBG_STATE_DIR": "/tmp/quickbg-settings-probe", **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def apply(settings, values: dict) -> None:
    for name, value in values.items():
        if name == "SECURE_PROXY_SSL_HEADER" and value is not None:
            value = tuple(value)
        storage_or_drf = ("AWS_S3_ENDPOINT_URL", "AWS_S3_VERIFY", "NUM_PROXIES")
        if name not in storage_or_drf and value is not None:
            setattr(settings, name, value)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": values["NUM_PROXIES"]}


def admin_sign_in(client: Client, user, password: str, *, origin: str, **secure) -> tuple:
    page = client.get("/admin/login/?next=/admin/", **secure)
    assert page.status_code == 200, page.status_code
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post(
        "/admin/login/?next=/admin/",
        {"csrfmiddlewaretoken": token, "username": user.username, "password": password,
         "next": "/admin/"},
        HTTP_ORIGIN=origin, HTTP_REFERER=f"{origin}/admin/login/", **secure,
    )
    return page, response


@needs_compose
def test_admin_sign_in_works_under_the_compose_settings(tmp_path, settings, db,
                                                        django_user_model):
    """The web container's environment, as `docker-compose config` renders it from a sample
    .env, loaded by quickbg.settings; then the real login form through the proxy's headers."""
    env = render(tmp_path)["services"]["web"]["environment"]
    values, _ = settings_under({k: str(v) for k, v in env.items()})
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["NUM_PROXIES"] == 1
    assert values["AWS_S3_ENDPOINT_URL"] == "https://quickbg.localhost:8443"
    assert values["AWS_S3_VERIFY"] == "/proxy-ca/root.crt"
    apply(settings, values)

    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pass")
    host = "quickbg.localhost:8443"
    via_proxy = {"HTTP_HOST": host, "HTTP_X_FORWARDED_PROTO": "https",
                 "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    client = Client(enforce_csrf_checks=True)
    # Plain HTTP past the proxy is sent to HTTPS.
    redirect = client.get("/admin/login/", HTTP_HOST=host)
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://")

    page, response = admin_sign_in(client, admin, "s3cret-pass", origin=f"https://{host}",
                                   **via_proxy)
    assert page.cookies["csrftoken"]["secure"]
    assert response.status_code == 302, response.content[:500]
    assert response["Location"] == "/admin/"
    assert response.cookies["sessionid"]["secure"]
    assert client.get("/admin/", **via_proxy).status_code == 200

    # CSRF is enforced: a forged post from another origin is refused.
    forged = Client(enforce_csrf_checks=True)
    _, refused = admin_sign_in(forged, admin, "s3cret-pass", origin="https://evil.example",
                               **via_proxy)
    assert refused.status_code == 403


@needs_compose
def test_check_deploy_is_clean_with_the_compose_settings(tmp_path):
    import secrets

    env = render(tmp_path, SECRET_KEY=secrets.token_hex(32))["services"]["web"]["environment"]
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
             "QUICKBG_STATE_DIR": str(tmp_path / "state"), **{k: str(v) for k, v in env.items()}},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plain_http_mode_is_explicit_and_warned(settings, db, django_user_model):
    base = {"DEBUG": "false", "SECRET_KEY": "k", "ALLOWED_HOSTS": "127.0.0.1"}
    strict, quiet = settings_under(base)
    assert strict["SESSION_COOKIE_SECURE"] is True and strict["CSRF_COOKIE_SECURE"] is True
    assert "QUICKBG_INSECURE_HTTP" not in quiet

    values, warning = settings_under({**base, "QUICKBG_INSECURE_HTTP": "true"})
    assert "QUICKBG_INSECURE_HTTP=true: serving plain HTTP" in warning
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 0
    apply(settings, values)

    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pass")
    client = Client(enforce_csrf_checks=True)
    page, response = admin_sign_in(client, admin, "s3cret-pass", origin="http://127.0.0.1",
                                   HTTP_HOST="127.0.0.1")
    assert not page.cookies["csrftoken"]["secure"]
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/", HTTP_HOST="127.0.0.1").status_code == 200


# --- The proxies (issue 16: TLS, same-origin downloads, body limits, forwarded headers) -----------


class EchoHandler(BaseHTTPRequestHandler):
    """Stands in for gunicorn behind the proxy: answers with the headers it received."""

    def do_GET(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def post_status(port: int, ca: Path, size: int, path: str = "/api/v1/uploads") -> int:
    """POST ``size`` bytes over TLS and return the status, also when the server stops reading."""
    import http.client
    import ssl

    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl.create_default_context(cafile=str(ca)))
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    chunk = b"x" * 65536
    try:
        for _ in range(size // len(chunk)):
            conn.send(chunk)
        conn.send(b"x" * (size % len(chunk)))
    except OSError:
        pass  # refused mid-body: the answer is already on its way
    try:
        return conn.getresponse().status
    finally:
        conn.close()


@needs_caddy
def test_caddy_serves_app_and_bucket_on_one_https_origin(tmp_path, moto_server):
    """deploy/Caddyfile run by deploy/caddy-entrypoint.sh, as in compose but on loopback: TLS
    from Caddy's internal CA (exported for the app), the app behind it, and an S3 presigned link
    signed for the public origin that downloads through the proxy."""
    import boto3
    from botocore.config import Config

    web = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    version = subprocess.run(["caddy", "version"], capture_output=True, text=True).stdout
    if re.match(r"v?2\.(?:[0-5]\.|6\.[0-3]\b)", version):
        # Debian 12's Caddy (2.6.2) predates request_buffers (2.6.4); the image has 2.10.
        caddyfile = re.sub(r"\n\s*request_buffers \S+", "", caddyfile)
    (tmp_path / "Caddyfile").write_text(caddyfile)
    port, bucket = free_port(), "quickbg-proxy-test"
    export = tmp_path / "ca" / "root.crt"
    export.parent.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CADDYFILE": str(tmp_path / "Caddyfile"), "CA_EXPORT": str(export),
        "CADDY_ROOT_CERT": str(tmp_path / "data/caddy/pki/authorities/local/root.crt"),
        "PUBLIC_HOST": "127.0.0.1", "HTTPS_PORT": str(port), "CADDY_TLS": "internal",
        "CADDY_ADMIN": f"127.0.0.1:{free_port()}", "AWS_STORAGE_BUCKET_NAME": bucket,
        "WEB_UPSTREAM": f"127.0.0.1:{web.server_address[1]}",
        "S3_UPSTREAM": moto_server.removeprefix("http://"),
    }
    proc = subprocess.Popen(["sh", str(ROOT / "deploy" / "caddy-entrypoint.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    origin = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not export.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        assert export.exists(), "the entry point did not export the CA root"
        assert export.stat().st_mode & 0o444 == 0o444
        echoed = wait_for(f"{origin}/api/v1/health", proc, verify=str(export),
                          headers={"X-Forwarded-For": "6.6.6.6"}).json()
        # The app sees HTTPS and the real client address, never what the client claims.
        assert echoed["x-forwarded-proto"] == "https"
        assert echoed["x-forwarded-for"] == "127.0.0.1"
        assert echoed["host"] == f"127.0.0.1:{port}"
        # Bodies over the limit stop at the proxy: 413, or 502 from Debian's Caddy 2.6, which
        # reports the cut-off as an upstream error.
        assert post_status(port, export, 13 * 1024 * 1024) in (413, 502)
        assert post_status(port, export, 11 * 1024 * 1024) == 200
        # A batch may be as large as QUICKBG_MAX_BATCH_MB (200) plus the app's margin.
        assert post_status(port, export, 150 * 1024 * 1024, "/api/v1/batches") == 200
        assert post_status(port, export, 206 * 1024 * 1024, "/api/v1/batches") in (413, 502)
        # The app's S3 client, as compose configures it: endpoint = the public origin, verified
        # with the exported root. Its presigned link downloads through the same origin.
        s3 = boto3.client("s3", endpoint_url=origin, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          verify=str(export), config=Config(s3={"addressing_style": "path"},
                                                            signature_version="s3v4"))
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="results/x.png", Body=b"\x89PNG result")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                              "Key": "results/x.png"})
        assert url.startswith(f"{origin}/{bucket}/results/x.png?")
        download = requests.get(url, verify=str(export), timeout=10)
        assert download.status_code == 200 and download.content == b"\x89PNG result"
    finally:
        stop(proc)
        web.shutdown()
    assert proc.returncode is not None


def self_signed_certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@needs_nginx
def test_nginx_example_is_valid_and_sized_for_uploads():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size and int(size[1]) > 10  # above QUICKBG_MAX_UPLOAD_MB's default
    assert "proxy_read_timeout 75s;" in conf and "proxy_send_timeout 75s;" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "proxy_set_header Host $http_host;" in conf
    assert "NUM_PROXIES=1" in conf and "SECURE_PROXY_SSL_HEADER=true" in conf


@needs_nginx
def test_nginx_example_serves_app_and_bucket_on_one_https_origin(tmp_path, moto_server):
    """deploy/nginx.conf run for real on loopback (ports, certificate and upstream addresses
    swapped in): redirect to HTTPS, forwarded headers, the body limit, and a presigned S3 link
    signed for the public origin that downloads through nginx."""
    import boto3
    from botocore.config import Config

    web = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    cert, key = self_signed_certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (
        ("/etc/ssl/certs/ssl-cert-snakeoil.pem", str(cert)),
        ("/etc/ssl/private/ssl-cert-snakeoil.key", str(key)),
        ("/tmp/quickbg-nginx.pid", str(tmp_path / "nginx.pid")),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{web.server_address[1]};"),
        ("server 127.0.0.1:9000;", f"server {moto_server.removeprefix('http://')};"),
        ("server_name quickbg.example.com;", "server_name 127.0.0.1;"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "nginx.conf").write_text(conf)
    checked = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr
    proc = subprocess.Popen(["nginx", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    origin = f"https://127.0.0.1:{https_port}"
    try:
        redirect = wait_for(f"http://127.0.0.1:{http_port}/admin/", proc)
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == "https://127.0.0.1/admin/"
        echoed = requests.get(f"{origin}/api/v1/health", verify=str(cert), timeout=10,
                              headers={"X-Forwarded-For": "6.6.6.6"}).json()
        assert echoed["x-forwarded-proto"] == "https"
        assert echoed["x-forwarded-for"] == "127.0.0.1"
        assert echoed["host"] == f"127.0.0.1:{https_port}"
        assert post_status(https_port, cert, 13 * 1024 * 1024) == 413
        assert post_status(https_port, cert, 11 * 1024 * 1024) == 200
        # A batch may be as large as QUICKBG_MAX_BATCH_MB (200) plus the app's margin.
        assert post_status(https_port, cert, 150 * 1024 * 1024, "/api/v1/batches") == 200
        assert post_status(https_port, cert, 206 * 1024 * 1024, "/api/v1/batches") == 413
        s3 = boto3.client("s3", endpoint_url=origin, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          verify=str(cert), config=Config(s3={"addressing_style": "path"},
                                                          signature_version="s3v4"))
        s3.create_bucket(Bucket="quickbg")
        s3.put_object(Bucket="quickbg", Key="results/n.png", Body=b"\x89PNG via nginx")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "quickbg",
                                                              "Key": "results/n.png"})
        assert url.startswith(f"{origin}/quickbg/results/n.png?")
        download = requests.get(url, verify=str(cert), timeout=10)
        assert download.status_code == 200 and download.content == b"\x89PNG via nginx"
    finally:
        stop(proc)
        web.shutdown()
