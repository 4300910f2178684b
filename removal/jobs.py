"""RQ entry points. Thin: claim the task, run it, and decide what each outcome means.

This module alone classifies failures:
- bad input (``InvalidInput``: the image, an option or the model name) fails the task at once
  with its message; no retry;
- a timeout (the model run stopped by ``InferenceTimeout``, or RQ's own job timeout) fails it with
  "Processing timed out after N s";
- a transient failure (database, Redis, storage, network: ``TRANSIENT_ERRORS``) hands the task
  back to the queue and re-raises, so RQ's ``Retry`` (set at enqueue) runs the job again after
  the backoff interval; once every attempt is used the task fails with the last error;
- anything else is a bug or an unreadable input: the task fails with a readable message.
"""

from __future__ import annotations

import logging

import botocore.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from removal import queue, runner
from removal.errors import InvalidInput
from removal.pipeline.errors import InferenceTimeout, InvalidOption
from removal.services import batches, tasks

logger = logging.getLogger(__name__)

# Failures worth retrying: the database, Redis, storage or the network was unavailable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    ConnectionError,
    TimeoutError,
)


def process_task(task_id: str) -> str:
    """Process one task. The only argument is the task id (JSON-serialised by RQ)."""
    outcome = _process(task_id)
    if outcome in ("completed", "failed"):  # a batch's last member fires batch.completed
        _finish_batch_member(task_id)
    return outcome


def _finish_batch_member(task_id: str) -> None:
    # Never fails the job: the task's outcome is already recorded.
    try:
        batches.batch_task_finished(task_id=task_id)
    except Exception:  # noqa: BLE001
        logger.exception("task %s: could not check its batch for completion", task_id)


def _process(task_id: str) -> str:
    job = get_current_job()
    claim = tasks.task_claim(task_id=task_id, job_id=job.id if job is not None else None)
    if claim is None:
        logger.info("task %s is not queued any more; nothing to do", task_id)
        return "skipped"
    try:
        outcome = runner.run_task(claim)
    except InvalidOption as exc:
        tasks.task_fail(claim=claim, message=f"Invalid option {exc}")
        return "failed"
    except InvalidInput as exc:
        tasks.task_fail(claim=claim, message=str(exc))
        return "failed"
    except FileNotFoundError:
        tasks.task_fail(claim=claim, message="The original image is missing from storage")
        return "failed"
    except (InferenceTimeout, JobTimeoutException):
        tasks.task_fail(claim=claim, message=f"Processing timed out after {queue.job_timeout()} s")
        return "failed"
    except TRANSIENT_ERRORS as exc:
        return _transient_failure(claim, exc)
    except Exception as exc:
        logger.exception("task %s failed", task_id)
        tasks.task_fail(claim=claim, message=f"Processing failed: {describe(exc)}")
        return "failed"
    tasks.task_complete(
        claim=claim, result_key=outcome.result_key,
        processing_time=outcome.processing_time, metrics=outcome.metrics,
    )
    return "completed"


def _transient_failure(claim: tasks.Claim, exc: Exception) -> str:
    message = describe(exc)
    if claim.attempt >= queue.max_attempts():
        logger.error("task %s failed after %s attempts: %r", claim.task.pk, claim.attempt, exc)
        tasks.task_fail(claim=claim, message=f"Failed after {claim.attempt} attempts: {message}")
        return "failed"
    logger.warning("task %s attempt %s hit a temporary error, will retry: %r",
                   claim.task.pk, claim.attempt, exc)
    tasks.task_release_for_retry(claim=claim, message=f"Temporary error, retrying: {message}")
    raise exc


def describe(exc: BaseException) -> str:
    """What kind of failure it was, for the task's ``error_message`` (which the API shows).

    Never the exception's own text: it can hold host names, paths or credentials. The details go
    to the worker's log with the task id.
    """
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "the database was temporarily unavailable"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "the queue (Redis) was temporarily unavailable"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return "the storage service was temporarily unavailable"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "a network connection failed"
    return f"an unexpected error ({type(exc).__name__}); the details are in the worker log"
