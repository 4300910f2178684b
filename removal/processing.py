"""Run the pipeline for one claimed task: fetch the original, cut out, store the result.

Django-aware glue between ``services`` (state) and ``pipeline`` (pure image code).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings

from removal import modelstore, storage
from removal.pipeline import compose, segment, validate
from removal.services import Claim, task_set_progress, validation_limits


@dataclass
class Outcome:
    result_key: str
    processing_time: float
    metrics: dict = field(default_factory=dict)


def model_file():
    return modelstore.model_path(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL)


def get_segmenter() -> segment.Segmenter:
    """The worker process's one ONNX Runtime session, created on first use."""
    return segment.get_segmenter(model_file(), settings.QUICKBG_ORT_THREADS)


def run(claim: Claim) -> Outcome:
    task, upload = claim.task, claim.task.upload
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - t0, 4)
        return now

    t = time.perf_counter()
    data = storage.read(upload.original_key)
    t = stage("fetch", t)
    task_set_progress(claim=claim, progress=15)

    image = validate.decode(data, validation_limits())
    t = stage("decode", t)
    task_set_progress(claim=claim, progress=25)

    mask = get_segmenter().mask(image)
    t = stage("segment", t)
    task_set_progress(claim=claim, progress=75)

    png = compose.encode_png(compose.cutout(image, mask))
    t = stage("encode", t)
    task_set_progress(claim=claim, progress=90)

    key = storage.write(storage.result_key(task_id=task.pk), png)
    stage("store", t)

    elapsed = round(time.perf_counter() - started, 4)
    return Outcome(
        result_key=key,
        processing_time=elapsed,
        metrics={
            "model": task.options.get("model", settings.QUICKBG_MODEL),
            "original_size": upload.byte_size,
            "processed_size": len(png),
            "stage_timings": timings,
        },
    )
