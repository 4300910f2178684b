"""RQ entry points. Thin: claim the task, run the pipeline, record the outcome through services.

Failure routing:
- bad input (``InvalidImage``) fails the task at once with its message; no retry;
- a timeout fails it with "Processing timed out after N s";
- a transient failure (database, Redis, storage, network) hands the task back to the queue and
  re-raises, so RQ's ``Retry`` (set at enqueue) runs the job again after the backoff interval;
  once every attempt is used the task fails with the last error;
- anything else is a bug or an unreadable input: the task fails with a readable message.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from removal import processing, services
from removal.errors import TRANSIENT_ERRORS, describe
from removal.pipeline.validate import InvalidImage

logger = logging.getLogger(__name__)


def process_task(task_id: str) -> str:
    """Process one task. The only argument is the task id (JSON-serialised by RQ)."""
    job = get_current_job()
    claim = services.task_claim(task_id=task_id, job_id=job.id if job is not None else None)
    if claim is None:
        logger.info("task %s is not queued any more; nothing to do", task_id)
        return "skipped"
    try:
        outcome = processing.run(claim)
    except InvalidImage as exc:
        services.task_fail(claim=claim, message=str(exc))
        return "failed"
    except FileNotFoundError:
        services.task_fail(claim=claim, message="The original image is missing from storage")
        return "failed"
    except JobTimeoutException:
        limit = job.timeout if job is not None and job.timeout else settings.QUICKBG_JOB_TIMEOUT
        services.task_fail(claim=claim, message=f"Processing timed out after {limit} s")
        return "failed"
    except TRANSIENT_ERRORS as exc:
        return _transient_failure(claim, exc)
    except Exception as exc:
        logger.exception("task %s failed", task_id)
        services.task_fail(claim=claim, message=f"Processing failed: {describe(exc)}")
        return "failed"
    services.task_complete(
        claim=claim, result_key=outcome.result_key,
        processing_time=outcome.processing_time, metrics=outcome.metrics,
    )
    return "completed"


def _transient_failure(claim: services.Claim, exc: Exception) -> str:
    message = describe(exc)
    if claim.attempt >= services.max_attempts():
        logger.error("task %s failed after %s attempts: %r", claim.task.pk, claim.attempt, exc)
        services.task_fail(
            claim=claim, message=f"Failed after {claim.attempt} attempts: {message}"
        )
        return "failed"
    logger.warning("task %s attempt %s hit a temporary error, will retry: %r",
                   claim.task.pk, claim.attempt, exc)
    services.task_release_for_retry(claim=claim, message=f"Temporary error, retrying: {message}")
    raise exc
