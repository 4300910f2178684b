from __future__ import annotations

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.django_db


def test_health_reports_every_check(api):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["service"] == "quickbg"
    assert {k: body["checks"][k] for k in ("api", "database", "redis", "storage")} == {
        "api": "ok", "database": "ok", "redis": "ok", "storage": "ok",
    }
    assert body["model"] == {"name": "isnet-general-use", "present": True}
    assert body["queue"]["depth"] == 0 and body["queue"]["workers"] >= 0


def test_health_reports_queue_depth_and_a_missing_model(api, user, settings, tmp_path,
                                                        django_capture_on_commit_callbacks):
    from removal.services.tasks import task_enqueue
    from tests.factories import make_task

    with django_capture_on_commit_callbacks(execute=True):
        task_enqueue(task=make_task(owner=user))
    settings.QUICKBG_MODELS_DIR = tmp_path
    body = api.get("/api/v1/health").json()
    assert body["queue"]["depth"] == 1
    assert body["model"]["present"] is False
    assert body["status"] == "healthy"  # informational, not an outage


def test_health_is_503_when_redis_is_down(api, settings):
    name = settings.QUICKBG_QUEUE
    settings.RQ_QUEUES = {name: {**settings.RQ_QUEUES[name],
                                 "URL": f"redis://127.0.0.1:{free_port()}/0"}}
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["queue"] is None


def test_health_is_503_when_the_bucket_is_missing(api, s3, settings):
    settings.AWS_STORAGE_BUCKET_NAME = "no-such-bucket"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"],
                    "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"],
                                "bucket_name": "no-such-bucket"}},
    }
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"].startswith("error")


def test_docs_and_schema_are_served(api):
    assert api.get("/api/v1/docs").status_code == 200
    schema = api.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/uploads" in schema.json()["paths"]
