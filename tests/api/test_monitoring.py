"""``/metrics``: off by default, bearer-token protected, Prometheus text read from the DB."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from removal.models import Task
from tests.factories import make_task

pytestmark = pytest.mark.django_db

Status = Task.Status
TOKEN = "s3cret-metrics-token"


@pytest.fixture
def metrics_on(settings):
    settings.QUICKBG_METRICS_TOKEN = TOKEN


def scrape(client, token=TOKEN):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family for family in families}


def samples(family, name=None):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in family.samples
        if name is None or s.name == name
    }


def test_metrics_are_off_by_default(client, settings):
    settings.QUICKBG_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer "])
def test_metrics_need_the_bearer_token(client, metrics_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"quickbg_tasks" not in response.content


def test_metrics_report_tasks_histogram_failures_and_queue(
    client, metrics_on, user, empty_queue, django_capture_on_commit_callbacks
):
    for seconds in (0.4, 1.5, 2.5, 2.9, 40.0):
        make_task(owner=user, status=Status.COMPLETED, processing_time=seconds)
    make_task(owner=user, status=Status.FAILED, error_message="boom")
    old_failure = make_task(owner=user, status=Status.FAILED, error_message="old")
    Task.objects.filter(pk=old_failure.pk).update(updated_at=timezone.now() - timedelta(days=2))
    queued = make_task(owner=user, status=Status.QUEUED)
    Task.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    with django_capture_on_commit_callbacks(execute=True):
        empty_queue.enqueue("removal.jobs.process_task", str(queued.pk))
        empty_queue.enqueue("removal.jobs.process_task", "another")

    families = scrape(client)

    assert samples(families["quickbg_tasks"]) == {
        ("quickbg_tasks", (("status", "queued"),)): 1.0,
        ("quickbg_tasks", (("status", "processing"),)): 0.0,
        ("quickbg_tasks", (("status", "completed"),)): 5.0,
        ("quickbg_tasks", (("status", "failed"),)): 2.0,
        ("quickbg_tasks", (("status", "expired"),)): 0.0,
    }
    histogram = families["quickbg_task_processing_seconds"]
    assert histogram.type == "histogram"
    bucket_samples = samples(histogram, "quickbg_task_processing_seconds_bucket")
    buckets = {dict(labels)["le"]: value for (_, labels), value in bucket_samples.items()}
    assert buckets["0.5"] == 1 and buckets["2.0"] == 2 and buckets["3.0"] == 4
    assert buckets["30.0"] == 4 and buckets["60.0"] == 5 and buckets["+Inf"] == 5
    count = samples(histogram, "quickbg_task_processing_seconds_count")
    total = samples(histogram, "quickbg_task_processing_seconds_sum")
    assert list(count.values()) == [5.0]
    assert list(total.values()) == [pytest.approx(47.3)]

    assert families["quickbg_task_failures_last_24h"].samples[0].value == 1
    age = families["quickbg_oldest_queued_task_age_seconds"].samples[0].value
    assert 85 <= age <= 600
    assert families["quickbg_redis_up"].samples[0].value == 1
    jobs = {dict(labels)["state"]: value
            for (_, labels), value in samples(families["quickbg_queue_jobs"]).items()
            if dict(labels)["queue"] == empty_queue.name}
    assert jobs["queued"] == 2 and jobs["started"] == 0
    assert "quickbg_queue_workers" in families
    assert "quickbg_model_present" in families


def test_model_present_gauge_follows_the_file(client, metrics_on, settings, tmp_path):
    settings.QUICKBG_MODELS_DIR = tmp_path
    families = scrape(client)
    assert families["quickbg_model_present"].samples[0].value == 0


def test_redis_down_is_reported_not_an_error(client, metrics_on, settings):
    settings.RQ_QUEUES = {
        name: {**conf, "URL": "redis://127.0.0.1:1/0"} for name, conf in settings.RQ_QUEUES.items()
    }
    families = scrape(client)
    assert families["quickbg_redis_up"].samples[0].value == 0
    assert "quickbg_queue_jobs" not in families
    assert samples(families["quickbg_tasks"])[("quickbg_tasks", (("status", "queued"),))] == 0


def test_big_tables_get_estimated_finished_counts_and_exact_queue_counts(client, metrics_on,
                                                                          monkeypatch):
    """Above ``ESTIMATE_ABOVE`` rows a scrape reads the planner's statistics, not every row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from removal import stats
    from tests.factories import make_upload, make_user

    owner = make_user()
    upload = make_upload(owner=owner)
    Task.objects.bulk_create(
        [Task(upload=upload, status=Status.COMPLETED, model="m") for _ in range(300)]
        + [Task(upload=upload, status=Status.FAILED, model="m") for _ in range(100)]
    )
    queued = [make_task(owner=owner) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE removal_task")
    make_task(owner=owner)  # after ANALYZE: only an exact count sees it
    monkeypatch.setattr(stats, "ESTIMATE_ABOVE", 100)

    with CaptureQueriesContext(connection) as queries:
        families = scrape(client)

    gauge = {labels[0][1]: value
             for (_, labels), value in samples(families["quickbg_tasks"]).items()}
    assert gauge["queued"] == len(queued) + 1  # exact
    assert abs(gauge["completed"] - 300) <= 15 and abs(gauge["failed"] - 100) <= 10
    assert samples(families["quickbg_tasks_estimated"]) == {("quickbg_tasks_estimated", ()): 1.0}
    # No query groups every task: the finished statuses came from pg_stats, and the others are
    # time-bounded (tasks by updated_at, batches by their created_at).
    assert not [q for q in queries.captured_queries
                if "GROUP BY" in q["sql"] and "IN ('queued', 'processing')" not in q["sql"]
                and "removal_task" in q["sql"] and "updated_at" not in q["sql"]
                and '"removal_batch"."created_at" >=' not in q["sql"]]
