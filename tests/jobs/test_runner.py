"""The task runner: options and model from the task, result in storage, metrics and the metrics
log. The job's classification of the runner's errors is tested through real workers elsewhere."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers

import numpy as np
import pytest
from PIL import Image

from removal import jobs, runner, storage
from removal.errors import InvalidInput
from removal.models import Task
from removal.pipeline.errors import InvalidImage, InvalidOption
from removal.pipeline.memory import PeakMemory
from removal.services.tasks import task_claim
from tests.factories import make_task, make_upload, make_user
from tests.helpers import DiscModel
from tests.lifecycle import assert_nothing_left_behind, stored


def jpeg(width=400, height=300) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


def metrics_file_handler() -> logging.handlers.WatchedFileHandler:
    [handler] = [h for h in logging.getLogger("quickbg.metrics").handlers
                 if isinstance(h, logging.handlers.WatchedFileHandler)]
    return handler


@pytest.fixture
def metrics_log(tmp_path):
    """The configured metrics file handler, pointed at a file of this test's own."""
    logger, configured = logging.getLogger("quickbg.metrics"), metrics_file_handler()
    path = tmp_path / "metrics.log"
    own = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    own.setFormatter(configured.formatter)
    logger.removeHandler(configured)
    logger.addHandler(own)
    yield path
    logger.removeHandler(own)
    own.close()
    logger.addHandler(configured)


def test_settings_route_metrics_lines_to_the_metrics_file(settings):
    assert metrics_file_handler().baseFilename == str(settings.QUICKBG_METRICS_LOG)
    assert logging.getLogger("quickbg.metrics").propagate is False  # not twice on the console


@pytest.mark.django_db
def test_the_metrics_file_is_reopened_after_logrotate_moves_it(metrics_log, stand_in_model):
    runner.run_task(claim_for(jpeg(), {}))
    rotated = metrics_log.with_name("metrics.log.1")
    metrics_log.rename(rotated)
    claim = claim_for(jpeg(), {})
    runner.run_task(claim)
    assert len(rotated.read_text().splitlines()) == 1
    [line] = metrics_log.read_text().splitlines()
    assert json.loads(line)["task_id"] == str(claim.task.pk)


@pytest.fixture
def stand_in_model(monkeypatch):
    model = DiscModel()
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: model)
    return model


def claim_for(data: bytes, options: dict, model: str = "isnet-general-use"):
    owner = make_user()
    upload = make_upload(owner=owner, byte_size=len(data))
    storage.write(upload.original_key, data)
    task = make_task(upload=upload, model=model, options=options)
    return task_claim(task_id=task.pk)


@pytest.mark.django_db
def test_run_stores_the_result_and_measures_it(metrics_log, stand_in_model):
    data = jpeg()
    claim = claim_for(data, {"format": "webp", "crop": "false"})
    outcome = runner.run_task(claim)

    stored = storage.read(outcome.result_key)
    assert outcome.result_key.endswith(".webp") and stored[:4] == b"RIFF"
    assert Image.open(io.BytesIO(stored)).size == (400, 300)
    m = outcome.metrics
    assert m["original_size"] == len(data) and m["processed_size"] == len(stored)
    assert m["compression_ratio"] == round(len(data) / len(stored), 3)
    assert m["model"] == "isnet-general-use"
    assert {"fetch", "decode", "inference", "encode", "store"} <= set(m["stage_timings"])
    assert 20 < m["memory_usage_mb"] < 4000 and m["memory_peak_per_task"] is True
    assert len(m["bbox"]) == 4 and 0 <= m["confidence"] <= 1
    claim.task.refresh_from_db()
    assert claim.task.progress == 95

    record = json.loads(metrics_log.read_text().strip().splitlines()[-1])
    assert record["task_id"] == str(claim.task.pk)
    assert record["upload_id"] == str(claim.task.upload_id)
    assert record["status"] == "completed"
    assert record["processing_time_seconds"] == outcome.processing_time
    assert record["memory_usage_mb"] == m["memory_usage_mb"]
    assert record["metadata"]["processed_size"] == len(stored)
    assert record["metadata"]["compression_ratio"] == m["compression_ratio"]
    assert record["metadata"]["stage_timings"]["inference"] >= 0
    assert record["metadata"]["model"] == "isnet-general-use"
    assert record["timestamp"].endswith("+00:00")


@pytest.mark.django_db
def test_a_failed_attempt_also_writes_a_metrics_line(metrics_log, stand_in_model):
    claim = claim_for(b"\xff\xd8\xff" + b"\x00" * 300, {})
    with pytest.raises(InvalidImage):
        runner.run_task(claim)
    record = json.loads(metrics_log.read_text().strip().splitlines()[-1])
    assert record["status"] == "failed"
    assert record["task_id"] == str(claim.task.pk)
    assert "not a valid image" in record["error"]
    assert record["memory_usage_mb"] > 0


@pytest.mark.django_db
def test_no_foreground_fails_with_a_clear_message(metrics_log, monkeypatch):
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: DiscModel(empty=True))
    with pytest.raises(InvalidImage, match="No foreground found in the image"):
        runner.run_task(claim_for(jpeg(), {}))


@pytest.mark.django_db
def test_a_bad_stored_option_is_an_invalid_option(metrics_log, stand_in_model):
    with pytest.raises(InvalidOption, match="crop_margin"):
        runner.run_task(claim_for(jpeg(), {"crop_margin": "90%"}))


@pytest.mark.django_db
def test_an_unknown_stored_model_is_refused_not_replaced(metrics_log):
    with pytest.raises(InvalidInput, match="Unknown model 'isnet-tiny'"):
        runner.run_task(claim_for(jpeg(), {}, model="isnet-tiny"))


def test_peak_memory_is_per_task_not_process_lifetime():
    import psutil

    big = np.ones(400 * 2**20, dtype=np.uint8)  # 400 MB resident before the task, then freed
    spike_mb = psutil.Process().memory_info().rss / 2**20
    del big
    with PeakMemory() as peak:
        small = np.ones(50 * 2**20, dtype=np.uint8)
        resident = peak.read()
        del small
    assert peak.per_task
    assert peak.mb >= resident - 2  # the kernel syncs its RSS counters lazily (~0.1 MB)
    assert peak.mb < spike_mb - 250  # the 400 MB spike before the task is not counted


class DeletingModel(DiscModel):
    """A stand-in model that deletes the task's upload through the API while it runs."""

    def __init__(self, delete):
        super().__init__()
        self.delete = delete

    def run(self, tensor, timeout=None):
        assert self.delete().status_code == 204
        return super().run(tensor, timeout)


@pytest.mark.django_db
def test_upload_deleted_while_processing_leaves_no_result(backend, user, client_for,
                                                          monkeypatch):
    from tests.images import make_image

    data = make_image("JPEG", (300, 200))
    upload = make_upload(owner=user, byte_size=len(data))
    storage.write(upload.original_key, data)
    task = make_task(upload=upload)
    client = client_for(user)
    model = DeletingModel(lambda: client.delete(f"/api/v1/uploads/{upload.pk}"))
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: model)
    written = []
    real_write = storage.write
    monkeypatch.setattr(storage, "write", lambda key, data, **kw: written.append(key)
                        or real_write(key, data, **kw))

    assert jobs.process_task(str(task.pk)) == "cancelled"

    assert written == [storage.result_key(task_id=task.pk)]  # the worker did write it ...
    assert not stored(written[0])  # ... and removed it when it saw the task was gone
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not stored(upload.original_key)
    assert_nothing_left_behind({upload.original_key, written[0]})
