"""RQ entry points. Thin: claim the task, run the pipeline, record the outcome through services."""

from __future__ import annotations

import logging

from removal import processing, services
from removal.pipeline.validate import InvalidImage

logger = logging.getLogger(__name__)


def process_task(task_id: str) -> str:
    """Process one task. The only argument is the task id (JSON-serialised by RQ)."""
    claim = services.task_claim(task_id=task_id)
    if claim is None:
        logger.info("task %s is not queued any more; nothing to do", task_id)
        return "skipped"
    try:
        outcome = processing.run(claim)
    except InvalidImage as exc:
        services.task_fail(claim=claim, message=str(exc))
        return "failed"
    except Exception as exc:
        logger.exception("task %s failed", task_id)
        services.task_fail(claim=claim, message=f"Processing failed: {exc}")
        return "failed"
    services.task_complete(
        claim=claim, result_key=outcome.result_key,
        processing_time=outcome.processing_time, metrics=outcome.metrics,
    )
    return "completed"
