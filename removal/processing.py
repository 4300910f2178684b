"""Run the pipeline for one claimed task: fetch the original, cut out, store the result, log.

Django-aware glue between ``services`` (state) and ``pipeline`` (pure image code). Every attempt
that ends writes one JSON metrics line (see ``log_task_metrics``), completed or failed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from removal import modelstore, storage
from removal.pipeline import segment
from removal.pipeline.memory import PeakMemory
from removal.pipeline.run import InvalidOption, Options, process
from removal.pipeline.validate import InvalidImage
from removal.services import Claim, task_set_progress, validation_limits

logger = logging.getLogger("quickbg.metrics")
# Seconds kept back from the job timeout so a stopped model run is reported before RQ's own.
TIMEOUT_MARGIN = 2.0


@dataclass
class Outcome:
    result_key: str
    processing_time: float
    metrics: dict = field(default_factory=dict)


def model_name(options: dict | None = None) -> str:
    name = (options or {}).get("model") or settings.QUICKBG_MODEL
    return name if name in modelstore.MODELS else settings.QUICKBG_MODEL


def model_file(name: str | None = None):
    return modelstore.model_path(settings.QUICKBG_MODELS_DIR, name or settings.QUICKBG_MODEL)


def get_segmenter(name: str | None = None) -> segment.Segmenter:
    """The worker process's ONNX Runtime session for the model, created on first use."""
    return segment.get_segmenter(model_file(name), settings.QUICKBG_ORT_THREADS)


def _options(task) -> Options:
    try:
        return Options.parse(task.options)
    except InvalidOption as exc:
        raise InvalidImage(f"Invalid option {exc}") from None


def job_timeout() -> float:
    """The running RQ job's own timeout (set when it was enqueued), else the setting."""
    job = get_current_job()
    return float(job.timeout) if job is not None and job.timeout else settings.QUICKBG_JOB_TIMEOUT


def compression_ratio(original_size: int, processed_size: int) -> float | None:
    """original / processed bytes: > 1 when the result is smaller than the upload."""
    return round(original_size / processed_size, 3) if processed_size else None


def run(claim: Claim) -> Outcome:
    """Process a claimed task. Logs a metrics line whether it succeeds or raises."""
    task = claim.task
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with PeakMemory() as peak:
        try:
            outcome = _run(claim, started, timings, peak)
        except BaseException as exc:
            log_task_metrics(
                task=task, status="failed", processing_time=time.perf_counter() - started,
                memory_usage_mb=peak.read(), metrics={"stage_timings": timings},
                error=str(exc) or type(exc).__name__,
            )
            raise
    log_task_metrics(task=task, status="completed", processing_time=outcome.processing_time,
                     memory_usage_mb=outcome.metrics["memory_usage_mb"], metrics=outcome.metrics)
    return outcome


def _run(claim: Claim, started: float, timings: dict, peak: PeakMemory) -> Outcome:
    task, upload = claim.task, claim.task.upload
    name = model_name(task.options)
    options = _options(task)

    t = time.perf_counter()
    data = storage.read(upload.original_key)
    timings["fetch"] = round(time.perf_counter() - t, 4)
    task_set_progress(claim=claim, progress=10)

    left = job_timeout() - (time.perf_counter() - started) - TIMEOUT_MARGIN
    try:
        result = process(
            data, segmenter=get_segmenter(name), options=options, limits=validation_limits(),
            on_progress=lambda percent: task_set_progress(claim=claim, progress=percent),
            inference_timeout=max(left, 1.0),
        )
    except segment.InferenceTimeout as exc:
        raise JobTimeoutException(str(exc)) from exc
    timings.update(result.metrics["stage_timings"])

    t = time.perf_counter()
    key = storage.write(storage.result_key(task_id=task.pk, extension=result.extension),
                        result.data)
    timings["store"] = round(time.perf_counter() - t, 4)

    metrics = {
        **result.metrics,
        "stage_timings": timings,
        "model": name,
        "options": options.to_dict(),
        "original_size": len(data),
        "processed_size": len(result.data),
        "compression_ratio": compression_ratio(len(data), len(result.data)),
        "memory_usage_mb": peak.read(),
        "memory_peak_per_task": peak.per_task,
    }
    return Outcome(result_key=key, processing_time=round(time.perf_counter() - started, 4),
                   metrics=metrics)


def log_task_metrics(*, task, status: str, processing_time: float | None,
                     memory_usage_mb: float | None = None, metrics: dict | None = None,
                     error: str | None = None) -> dict:
    """Write the task's metrics line to the ``quickbg.metrics`` logger and append it to
    ``settings.QUICKBG_METRICS_LOG`` (JSON Lines). Returns the record.

    Field names are the seed's: ``timestamp, upload_id, task_id, status,
    processing_time_seconds, memory_usage_mb, metadata{original_size, processed_size,
    compression_ratio}``, plus ``stage_timings`` and ``model`` in ``metadata``.
    """
    metrics = metrics or {}
    metadata = {
        "original_size": metrics.get("original_size", task.upload.byte_size),
        "processed_size": metrics.get("processed_size"),
        "compression_ratio": metrics.get("compression_ratio"),
        "model": metrics.get("model") or model_name(task.options),
        "stage_timings": metrics.get("stage_timings", {}),
    }
    for key in ("bbox", "confidence", "input_width", "input_height", "output_width",
                "output_height"):
        if key in metrics:
            metadata[key] = metrics[key]
    record = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": "task_finished",
        "upload_id": str(task.upload_id),
        "task_id": str(task.pk),
        "status": status,
        "processing_time_seconds": None if processing_time is None else round(processing_time, 4),
        "memory_usage_mb": memory_usage_mb,
        "metadata": metadata,
    }
    if error:
        record["error"] = error[:500]
    line = json.dumps(record, sort_keys=False)
    logger.info(line)
    _append(line)
    return record


def _append(line: str) -> None:
    path = settings.QUICKBG_METRICS_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        logger.exception("could not append to the metrics file %s", path)
