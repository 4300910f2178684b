from __future__ import annotations

import socket

import boto3
import django_rq
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.factories import PASSWORD, make_user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def empty_queue():
    """Each test starts and ends with an empty RQ queue of its own."""
    queue = django_rq.get_queue(django_settings.QUICKBG_QUEUE)
    queue.empty()
    yield queue
    queue.empty()


@pytest.fixture
def user(db):
    return make_user()


@pytest.fixture
def other_user(db):
    return make_user()


def token_for(client: APIClient, user) -> str:
    response = client.post(
        "/api/v1/auth/token", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["access"]


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def client_for(api):
    """``client_for(user)`` → an APIClient carrying a real JWT access token for that user."""

    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(api, user)}")
        return client

    return make


@pytest.fixture
def run_worker():
    """Run a real QuickBG RQ worker in burst mode until the queue is empty."""

    def run() -> None:
        call_command("run_worker", "--burst")

    return run


# --- S3 through moto in server mode (real HTTP on loopback) -----------------------------------


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server, settings, monkeypatch):
    """Switch storage to S3 (django-storages) against the moto server, with a fresh bucket."""
    bucket = "quickbg-test"
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.STORAGES = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": moto_server,
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "file_overwrite": True,
                "querystring_auth": True,
            },
        },
        "staticfiles": django_settings.STORAGES["staticfiles"],
    }
    yield client
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    for obj in objects:
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def subprocess_env() -> dict:
    """Environment for a QuickBG process (worker, command) that must share this test's world:
    the test database, the test queue, the test media folder."""
    import os

    from django.db import connection

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env.update(
        DJANGO_SETTINGS_MODULE="quickbg.settings",
        QUICKBG_QUEUE=django_settings.QUICKBG_QUEUE,
        QUICKBG_MEDIA_ROOT=str(
            django_settings.STORAGES["default"].get("OPTIONS", {}).get("location")
            or django_settings.MEDIA_ROOT
        ),
        REDIS_URL=django_settings.RQ_QUEUES[django_settings.QUICKBG_QUEUE]["URL"],
        QUICKBG_ORT_THREADS=str(django_settings.QUICKBG_ORT_THREADS),
    )
    return env


class RedisServer:
    """A redis-server of the test's own on a free loopback port, without persistence, so a
    test can stop it, restart it empty, or FLUSHALL it without touching anyone else's data."""

    def __init__(self, tmp_path):
        import shutil

        self.port = free_port()
        self.dir = tmp_path
        self.binary = shutil.which("redis-server")
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart_empty(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path, settings):
    """Point the test queue at a private redis-server (stopped at the end)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    name = settings.QUICKBG_QUEUE
    settings.RQ_QUEUES = {name: {**settings.RQ_QUEUES[name], "URL": server.url}}
    yield server
    server.stop()


@pytest.fixture(scope="session")
def segmenter():
    """The real ISNet session (2 threads), loaded once for the whole test run. ``make test``
    fetches the weights first, so this fails rather than skips when they are missing."""
    from removal import modelstore
    from removal.pipeline.segment import get_segmenter

    return get_segmenter(modelstore.verify(django_settings.QUICKBG_MODELS_DIR), 2)
