from __future__ import annotations

import boto3
import django_rq
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.factories import make_user
from tests.helpers import Receiver, RedisServer, free_port, token_for
from tests.process_guard import pytest_configure, pytest_sessionfinish  # noqa: F401 - hooks


@pytest.fixture(autouse=True)
def empty_queue():
    """Each test starts and ends with empty RQ queues of its own (every model's interactive
    and batch queue); yields the default model's interactive queue."""
    from removal import queue as queue_module

    queues = [django_rq.get_queue(name) for name in queue_module.all_task_queue_names()]
    for each in queues:
        each.empty()
    yield queue_module.get_queue()
    for each in queues:
        each.empty()


@pytest.fixture
def user(db):
    return make_user()


@pytest.fixture
def other_user(db):
    return make_user()


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


@pytest.fixture
def own_redis(tmp_path, settings):
    """Point the test queue at a private redis-server (stopped at the end)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    # Every queue (the task queue and the ones derived from it) moves to the private server.
    settings.RQ_QUEUES = {name: {**config, "URL": server.url}
                          for name, config in settings.RQ_QUEUES.items()}
    yield server
    server.stop()


@pytest.fixture(scope="session")
def segmenter():
    """The real ISNet session (2 threads), loaded once for the whole test run. ``make test``
    fetches the weights first, so this fails rather than skips when they are missing."""
    from removal import modelstore
    from removal.pipeline.segment import get_segmenter

    return get_segmenter(modelstore.verify(django_settings.QUICKBG_MODELS_DIR), 2)


@pytest.fixture
def webhooks_queue():
    """The webhooks queue, empty at the start and end of the test: no jobs, no scheduled
    retries, and no scheduler lock. A worker an earlier test SIGKILLed keeps that lock for
    rq's 61 s, and while it does a burst worker here would never move a due retry."""
    from rq.scheduler import RQScheduler

    from removal.queue import webhooks_queue_name

    q = django_rq.get_queue(webhooks_queue_name())

    def clear():
        q.empty()
        for job_id in q.scheduled_job_registry.get_job_ids():
            q.scheduled_job_registry.remove(job_id, delete_job=True)
        q.connection.delete(RQScheduler.get_locking_key(q.name))

    clear()
    yield q
    clear()


@pytest.fixture
def receiver_for(settings):
    started = []

    def make(owner, **kwargs) -> Receiver:
        from removal.services import webhooks

        receiver = Receiver(webhooks.secret_get(owner=owner).secret, **kwargs)
        receiver.server.__enter__()
        started.append(receiver)
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{r.server.port}" for r in started]
        return receiver

    yield make
    for receiver in started:
        receiver.server.__exit__(None, None, None)


@pytest.fixture(params=["local", "s3"])
def backend(request):
    """Run the test on local storage and on S3 (moto)."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    return request.param
