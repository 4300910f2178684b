"""The worker's glue: options from the task, result in storage, metrics and the metrics log."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from removal import processing, services, storage
from removal.pipeline.memory import PeakMemory
from removal.pipeline.validate import InvalidImage
from tests.factories import make_task, make_upload, make_user
from tests.pipeline.conftest import DiscModel


def jpeg(width=400, height=300) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def metrics_log(settings, tmp_path):
    settings.QUICKBG_METRICS_LOG = tmp_path / "logs" / "metrics.log"
    return settings.QUICKBG_METRICS_LOG


@pytest.fixture
def stand_in_model(monkeypatch):
    model = DiscModel()
    monkeypatch.setattr(processing, "get_segmenter", lambda name=None: model)
    return model


def claim_for(data: bytes, options: dict):
    owner = make_user()
    upload = make_upload(owner=owner, byte_size=len(data))
    storage.write(upload.original_key, data)
    task = make_task(upload=upload, options={"model": "isnet-general-use", **options})
    return services.task_claim(task_id=task.pk)


@pytest.mark.django_db
def test_run_stores_the_result_and_measures_it(metrics_log, stand_in_model):
    data = jpeg()
    claim = claim_for(data, {"format": "webp", "crop": "false"})
    outcome = processing.run(claim)

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
        processing.run(claim)
    record = json.loads(metrics_log.read_text().strip().splitlines()[-1])
    assert record["status"] == "failed"
    assert record["task_id"] == str(claim.task.pk)
    assert "not a valid image" in record["error"]
    assert record["memory_usage_mb"] > 0


@pytest.mark.django_db
def test_no_foreground_fails_with_a_clear_message(metrics_log, monkeypatch):
    monkeypatch.setattr(processing, "get_segmenter", lambda name=None: DiscModel(empty=True))
    with pytest.raises(InvalidImage, match="No foreground found in the image"):
        processing.run(claim_for(jpeg(), {}))


@pytest.mark.django_db
def test_a_bad_stored_option_is_a_permanent_failure(metrics_log, stand_in_model):
    with pytest.raises(InvalidImage, match="crop_margin"):
        processing.run(claim_for(jpeg(), {"crop_margin": "90%"}))


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
