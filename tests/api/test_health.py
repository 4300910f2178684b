"""``/api/v1/health``: the public answer, the details for the metrics token and staff, 503 when
Redis or storage is down, the probe's traces, its throttle, and the storage probe run once per
window, not per poll; the API docs are served."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from removal import storage
from removal.api import health
from tests.factories import make_user
from tests.helpers import free_port

pytestmark = pytest.mark.django_db

PUBLIC_CHECKS = {"api", "database", "redis", "s3", "storage"}


def test_public_health_is_the_seed_contract_and_nothing_more(api):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy", "service": "quickbg",
        "checks": {name: "ok" for name in PUBLIC_CHECKS},
    }
    assert response["Cache-Control"] == "no-store"


def test_health_details_are_for_the_metrics_token(api, settings):
    settings.QUICKBG_METRICS_TOKEN = "health-token-0123456789"
    wrong = api.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 200 and "details" not in wrong.json()
    body = api.get("/api/v1/health",
                   HTTP_AUTHORIZATION="Bearer health-token-0123456789").json()
    assert body["checks"] == {name: "ok" for name in PUBLIC_CHECKS}
    details = body["details"]
    assert details["model"]["name"] == "isnet-general-use" and details["model"]["present"]
    assert details["model"]["path"].endswith(".onnx")
    assert details["queue"]["depth"] == 0 and details["queue"]["workers"] >= 0
    assert details["errors"] == {} and details["storage"] == "local"


def test_health_details_are_for_staff_sessions_not_api_users(user, client_for):
    staff = make_user(is_staff=True)
    session = APIClient()
    session.force_login(staff)
    assert "details" in session.get("/api/v1/health").json()
    # A signed-in API user (JWT) who is not staff sees the public answer.
    body = client_for(user).get("/api/v1/health").json()
    assert set(body) == {"status", "service", "checks"}
    ordinary = APIClient()
    ordinary.force_login(user)
    assert "details" not in ordinary.get("/api/v1/health").json()


def test_health_reports_queue_depth_and_a_missing_model_to_staff(
    api, user, settings, tmp_path, django_capture_on_commit_callbacks
):
    from removal.services.tasks import task_enqueue
    from tests.factories import make_task

    with django_capture_on_commit_callbacks(execute=True):
        task_enqueue(task=make_task(owner=user))
    settings.QUICKBG_MODELS_DIR = tmp_path
    settings.QUICKBG_METRICS_TOKEN = "t0ken-for-health"
    response = api.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer t0ken-for-health")
    body = response.json()
    assert body["details"]["queue"]["depth"] == 1
    assert body["details"]["model"]["present"] is False
    assert response.status_code == 200 and body["status"] == "healthy"  # not an outage


def test_health_is_503_when_redis_is_down(api, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.RQ_QUEUES = {name: {**conf, "URL": dead} for name, conf in settings.RQ_QUEUES.items()}
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"] == {"api": "ok", "database": "ok", "redis": "error", "s3": "ok",
                              "storage": "ok"}
    settings.QUICKBG_METRICS_TOKEN = "tok-redis-down"
    details = api.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer tok-redis-down").json()
    assert details["details"]["queue"] is None
    assert "ConnectionError" in details["details"]["errors"]["redis"]


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
    assert response.json()["checks"]["s3"] == "error"
    assert response.json()["checks"]["storage"] == "error"


def test_health_storage_check_writes_and_reads_s3(api, s3, settings):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["checks"]["s3"] == "ok"
    # The probe cleaned up after itself.
    assert s3.list_objects_v2(Bucket=settings.AWS_STORAGE_BUCKET_NAME).get("KeyCount") == 0


def test_health_is_503_when_local_storage_cannot_be_written(api, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"a file where the media folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(blocker / "media")}},
    }
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["checks"] == {"api": "ok", "database": "ok", "redis": "ok",
                                         "s3": "error", "storage": "error"}


def test_health_probe_leaves_nothing_in_local_storage(api):
    assert api.get("/api/v1/health").status_code == 200
    assert not default_storage.exists("health") or default_storage.listdir("health")[1] == []


def test_health_is_throttled_per_address(api, settings):
    settings.QUICKBG_HEALTH_RATE = "3/min"
    codes = [api.get("/api/v1/health", REMOTE_ADDR="192.0.2.31").status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert api.get("/api/v1/health", REMOTE_ADDR="192.0.2.32").status_code == 200


def test_docs_and_schema_are_served(api):
    assert api.get("/api/v1/docs").status_code == 200
    schema = api.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/uploads" in schema.json()["paths"]


# --- the storage probe: one write-read-delete per window --------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probes(monkeypatch):
    """Count the real storage probes; ``probes.fail`` makes the next ones raise."""

    class Probes:
        count = 0
        fail = False

    real = storage.probe

    def counted():
        Probes.count += 1
        if Probes.fail:
            raise OSError("bucket unreachable")
        real()

    monkeypatch.setattr(storage, "probe", counted)
    clock = Clock()
    monkeypatch.setattr(health._storage_probe, "clock", clock)
    health._storage_probe.forget()
    Probes.clock = clock
    yield Probes
    health._storage_probe.forget()


def storage_check(api) -> tuple[int, str]:
    response = api.get("/api/v1/health")
    return response.status_code, response.json()["checks"]["storage"]


def test_two_polls_within_the_window_probe_storage_once(api, probes):
    assert storage_check(api) == (200, "ok")
    probes.clock.now += health.STORAGE_PROBE_SECONDS - 0.1
    assert storage_check(api) == (200, "ok")
    assert probes.count == 1
    probes.clock.now += 0.2
    assert storage_check(api) == (200, "ok")
    assert probes.count == 2


def test_a_failed_probe_is_repeated_for_the_window_only(api, probes):
    probes.fail = True
    assert storage_check(api) == (503, "error")
    probes.fail = False  # storage recovered: the window still reports the failure it saw
    assert storage_check(api) == (503, "error")
    assert probes.count == 1
    probes.clock.now += health.STORAGE_PROBE_SECONDS
    assert storage_check(api) == (200, "ok")
    assert probes.count == 2


def test_a_skipped_storage_check_does_not_probe(api, probes):
    response = api.get("/api/v1/health?skip=storage")
    assert response.status_code == 200 and response.json()["checks"]["storage"] == "skipped"
    assert probes.count == 0
