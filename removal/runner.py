"""The task runner: for one claimed task, fetch the original, cut it out, store the result, log.

Django-aware glue between the job (``removal.jobs``, which decides what each failure means) and
the pipeline (``removal.pipeline.cutout``, pure image code). It raises whatever went wrong and
records no outcome itself. Every attempt that ends writes one JSON metrics line (see
``log_task_metrics``), completed or failed, to the ``quickbg.metrics`` logger; settings route
that logger to the console and to ``QUICKBG_METRICS_LOG``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from rq import get_current_job

from removal import modelstore, queue, selectors, storage
from removal.errors import InvalidInput, ModelUnavailable, TaskGone
from removal.pipeline import segment
from removal.pipeline.cutout import cut_out
from removal.pipeline.memory import PeakMemory
from removal.pipeline.options import Options
from removal.pipeline.sessions import LoadedModels, new_model
from removal.services.tasks import Claim, task_set_progress
from removal.services.uploads import validation_limits

logger = logging.getLogger("quickbg.metrics")
# Seconds kept back from the job timeout so a stopped model run is reported before RQ's own.
TIMEOUT_MARGIN = 2.0


@dataclass
class Outcome:
    result_key: str
    processing_time: float
    metrics: dict = field(default_factory=dict)


def model_file(name: str | None = None):
    """The weights file of a model (default ``QUICKBG_MODEL``); an unknown name is an error."""
    name = name or settings.QUICKBG_MODEL
    if name not in modelstore.MODELS:
        raise InvalidInput(
            f"Unknown model {name!r}; known models: {', '.join(sorted(modelstore.MODELS))}"
        )
    return modelstore.model_path(settings.QUICKBG_MODELS_DIR, name)


# This process's model sessions (a worker's, the removebg command's): lazily made, LRU-bounded.
loaded_models = LoadedModels()


def load_model(name: str) -> segment.TensorModel:
    """A new session for ``name`` on this process's ORT settings, after checking its licence
    gate and its file (checksum): the ISNet serving graph, or rembg's session."""
    try:
        modelstore.check_licence(
            name, allow_noncommercial=settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS)
        return new_model(name, settings.QUICKBG_MODELS_DIR, settings.QUICKBG_ORT_THREADS)
    except modelstore.ModelError as exc:
        raise ModelUnavailable(str(exc)) from None


def get_segmenter(name: str | None = None) -> segment.TensorModel:
    """The process's session for the model (default ``QUICKBG_MODEL``), made on first use; at
    most ``QUICKBG_MAX_LOADED_MODELS`` are kept, the least recently used dropped first."""
    name = name or settings.QUICKBG_MODEL
    model_file(name)  # an unknown name is bad input
    return loaded_models.get(name, lambda: load_model(name), settings.QUICKBG_MAX_LOADED_MODELS)


def compression_ratio(original_size: int, processed_size: int) -> float | None:
    """original / processed bytes: > 1 when the result is smaller than the upload."""
    return round(original_size / processed_size, 3) if processed_size else None


def run_task(claim: Claim) -> Outcome:
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
    options = Options.parse(task.options)
    segmenter = get_segmenter(task.model)

    t = time.perf_counter()
    data = storage.read(upload.original_key)
    background = storage.read(task.background_key) if task.background_key else None
    timings["fetch"] = round(time.perf_counter() - t, 4)
    task_set_progress(claim=claim, progress=10)

    left = queue.job_timeout() - (time.perf_counter() - started) - TIMEOUT_MARGIN
    result = cut_out(
        data, segmenter=segmenter, options=options, limits=validation_limits(),
        on_progress=lambda percent: task_set_progress(claim=claim, progress=percent),
        inference_timeout=max(left, 1.0),
        background=background,
    )
    timings.update(result.metrics["stage_timings"])

    t = time.perf_counter()
    key = storage.result_key(task_id=task.pk, extension=result.extension)
    storage.write(key, result.data, content_type=storage.content_type_of(key))
    timings["store"] = round(time.perf_counter() - t, 4)
    # Checked after the write: a delete that committed before this check is seen here (and what
    # was written is removed); one that commits after it deletes the object itself. A task that
    # was only taken over (recovered) keeps the object: the new attempt writes the same key.
    if selectors.task_gone(task_id=task.pk):
        storage.delete_quietly(key)
        raise TaskGone(f"Task {task.pk} was deleted while it ran")

    job = get_current_job()
    metrics = {
        **result.metrics,
        "stage_timings": timings,
        "model": task.model,
        "worker": getattr(job, "worker_name", None) or None,
        # The weights' pinned sha256 (verified when loaded): result reuse matches on it.
        "model_sha256": modelstore.MODELS[task.model or settings.QUICKBG_MODEL].sha256,
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
    """Write the task's metrics line (one JSON object) to the ``quickbg.metrics`` logger, which
    settings also route to ``QUICKBG_METRICS_LOG`` (JSON Lines). Returns the record.

    Field names are the seed's: ``timestamp, upload_id, task_id, status,
    processing_time_seconds, memory_usage_mb, metadata{original_size, processed_size,
    compression_ratio}``, plus ``stage_timings`` and ``model`` in ``metadata``.
    """
    metrics = metrics or {}
    metadata = {
        "original_size": metrics.get("original_size", task.upload.byte_size),
        "processed_size": metrics.get("processed_size"),
        "compression_ratio": metrics.get("compression_ratio"),
        "model": metrics.get("model") or task.model,
        "stage_timings": metrics.get("stage_timings", {}),
    }
    for key in ("bbox", "foreground", "confidence", "input_width", "input_height", "output_width",
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
    logger.info(json.dumps(record, sort_keys=False))
    return record
