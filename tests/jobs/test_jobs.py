"""removal.jobs with real workers: what each failure means for a task (transient storage errors
retried, bad input failed at once, a timeout frees the worker) and a worker that lost its claim
records nothing."""

from __future__ import annotations

import io

import pytest
from botocore.config import Config as BotoConfig
from PIL import Image

from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import make_task, stored_task
from tests.helpers import free_port
from tests.images import fixture_bytes, make_image


@pytest.mark.django_db(transaction=True)
def test_transient_storage_failure_is_retried_then_fails_with_reason(user, s3, settings,
                                                                    run_worker):
    settings.QUICKBG_RETRY_DELAY = 0  # retry at once so the burst worker runs every attempt
    task = stored_task(user, make_image())
    task_enqueue(task=task)
    dead = f"http://127.0.0.1:{free_port()}"  # storage unreachable: connection refused
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"],
        "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": dead,
                    "client_config": BotoConfig(
                        retries={"max_attempts": 1}, connect_timeout=1)},
    }}
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.attempts == 4  # the first try and three retries
    assert task.error_message == (
        "Failed after 4 attempts: the storage service was temporarily unavailable"
    )


class FlakyS3:
    """A botocore ``before-call`` hook on the storage client: the first S3 calls fail the way a
    busy or flaky S3 does (connection reset, 503 SlowDown, 500 InternalError), the rest reach
    moto."""

    def __init__(self):
        self.calls: list[str] = []
        self.failures = [self._reset, self._answer(503, "SlowDown"),
                         self._answer(500, "InternalError")]

    def _reset(self, **_):
        from botocore.exceptions import ResponseStreamingError

        raise ResponseStreamingError(error=ConnectionResetError(104, "Connection reset by peer"))

    @staticmethod
    def _answer(status: int, code: str):
        from botocore.awsrequest import AWSResponse

        def answer(**_):
            http = AWSResponse("http://s3", status, {}, None)
            return http, {"Error": {"Code": code, "Message": code},
                          "ResponseMetadata": {"HTTPStatusCode": status}}
        return answer

    def __call__(self, model, **kwargs):
        self.calls.append(model.name)
        if len(self.calls) <= len(self.failures):
            return self.failures[len(self.calls) - 1](**kwargs)
        return None


@pytest.mark.django_db(transaction=True)
def test_transient_s3_errors_go_back_to_the_queue_and_the_task_completes(
        user, s3, settings, run_worker, monkeypatch):
    from django.core.files.storage import default_storage

    from removal import runner
    from tests.helpers import DiscModel

    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: DiscModel())
    settings.QUICKBG_RETRY_DELAY = 0  # retry at once so the burst worker runs every attempt
    task = stored_task(user, make_image())
    task_enqueue(task=task)
    flaky = FlakyS3()
    default_storage.connection.meta.client.meta.events.register("before-call.s3", flaky)
    run_worker()
    task.refresh_from_db()
    assert len(flaky.calls) > 3  # the three injected failures, then real calls to moto
    assert task.status == Task.Status.COMPLETED, task.error_message
    assert task.attempts == 4  # three transient failures, each sent back to the queue
    png = s3.get_object(Bucket=settings.AWS_STORAGE_BUCKET_NAME, Key=task.result_key)
    assert png["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db(transaction=True)
def test_bad_input_fails_at_once_without_retry(user, run_worker, empty_queue):
    noisy = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(noisy, format="JPEG")
    corrupt = noisy.getvalue()[: len(noisy.getvalue()) // 2]  # header intact, pixels cut off
    task = stored_task(user, corrupt)
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.attempts == 1
    assert "truncated or corrupt" in task.error_message
    assert empty_queue.scheduled_job_registry.count == 0


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_job_past_its_timeout_fails_and_frees_the_worker(user, settings, run_worker, empty_queue):
    settings.QUICKBG_JOB_TIMEOUT = 1  # one ISNet inference takes longer than this
    slow = stored_task(user, fixture_bytes("car-1.jpg"))
    task_enqueue(task=slow)
    settings.QUICKBG_JOB_TIMEOUT = 300
    quick = stored_task(user, fixture_bytes("car-1.jpg"))
    task_enqueue(task=quick)
    run_worker()
    slow.refresh_from_db()
    quick.refresh_from_db()
    assert slow.status == Task.Status.FAILED
    assert slow.error_message == "Processing timed out after 1 s"
    assert quick.status == Task.Status.COMPLETED  # the same worker went on to the next job


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_claim_records_nothing_and_announces_nothing(
        user, monkeypatch, empty_queue):
    """The reconciler took the task back while the model ran (a hung job): the old attempt's
    outcome is not recorded, no waiter is told, and no webhook event is sent from it."""
    from removal import jobs, queue, runner
    from removal.models import WebhookDelivery
    from tests.helpers import DiscModel

    task = stored_task(user, make_image(), webhook_url="http://127.0.0.1:9/hook")

    class TakenOver(DiscModel):
        def run(self, tensor, timeout=None):
            Task.objects.filter(pk=task.pk).update(status=Task.Status.QUEUED, claim_token=None)
            return super().run(tensor, timeout)

    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: TakenOver())
    assert jobs.process_task(str(task.pk)) == "skipped"
    task.refresh_from_db()
    assert task.status == Task.Status.QUEUED and task.finished_at is None
    assert not queue.wait_task_done(task.pk, timeout=0.5)
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_job_exception_marks_task_failed_with_readable_message(user, run_worker,
                                                               django_capture_on_commit_callbacks):
    task = make_task(owner=user)  # its original was never stored
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error_message == "The original image is missing from storage"
    assert task.attempts == 1 and task.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_task_that_is_not_queued_is_not_processed_again(user, run_worker):
    task = make_task(owner=user, status=Task.Status.COMPLETED, result_key="results/x.png")
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert (task.status, task.attempts, task.result_key) == ("completed", 0, "results/x.png")
