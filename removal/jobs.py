"""RQ entry points. Thin: claim the task, run it, and decide what each outcome means.

This module alone classifies failures:
- bad input (``InvalidInput``: the image, an option or the model name) fails the task at once
  with its message; no retry;
- a timeout (the model run stopped by ``InferenceTimeout``, or RQ's own job timeout) fails it with
  "Processing timed out after N s";
- a transient failure (database, Redis, storage, network: ``is_transient``: ``TRANSIENT_ERRORS``,
  and S3 answers that mean "try again": 5xx, ``SlowDown`` and other throttling codes) hands the task
  back to the queue and re-raises, so RQ's ``Retry`` (set at enqueue) runs the job again after
  the backoff interval; once every attempt is used the task fails with the last error;
- a task deleted while it ran (``TaskGone``: its upload or account was deleted) ends quietly;
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
from removal.errors import InvalidInput, ModelUnavailable, TaskGone
from removal.pipeline.errors import InferenceTimeout, InvalidOption
from removal.services import tasks, webhooks

logger = logging.getLogger(__name__)

# Failures worth retrying: the database, Redis, storage or the network was unavailable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # Could not connect (refused, DNS, TLS, proxy, connect timeout).
    botocore.exceptions.ConnectionError,
    # The connection closed or was reset while sending or reading (``ConnectionClosedError``,
    # ``ResponseStreamingError``), a read timeout: every failure of the HTTP exchange itself.
    botocore.exceptions.HTTPClientError,
    ConnectionError,  # ConnectionResetError, ConnectionRefusedError, BrokenPipeError...
    TimeoutError,
)

# S3 error codes that mean "slow down" or "try again" whatever the HTTP status (botocore's own
# retry handlers treat the same codes as throttling or transient).
RETRYABLE_STORAGE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "PriorRequestNotComplete",
})


def _storage_error_is_transient(exc: botocore.exceptions.ClientError) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return code in RETRYABLE_STORAGE_CODES or int(status) >= 500 or int(status) == 429


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the database, Redis, storage or the network was briefly unavailable, or
    S3 answered 5xx, 429 or a throttling code. A 4xx from S3 (access denied, no such bucket) is
    a configuration error and is not retried."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return (isinstance(exc, botocore.exceptions.ClientError)
            and _storage_error_is_transient(exc))


def process_task(task_id: str) -> str:
    """Process one task. The only argument is the task id (JSON-serialised by RQ). What follows
    an outcome (waiters, the webhook event, the batch) is ``services.tasks.task_finished``'s,
    run by ``task_complete`` and ``task_fail`` themselves."""
    job = get_current_job()
    claim = tasks.task_claim(task_id=task_id, job_id=job.id if job is not None else None)
    if claim is None:
        logger.info("task %s is not queued any more; nothing to do", task_id)
        return "skipped"
    try:
        outcome = runner.run_task(claim)
    except TaskGone:
        # Its deletion ended it (``services.uploads.uploads_delete`` called ``task_finished``).
        logger.info("task %s was deleted while it ran; its result was removed", task_id)
        return "cancelled"
    except InvalidOption as exc:
        return _fail(claim, f"Invalid option {exc}")
    except (InvalidInput, ModelUnavailable) as exc:
        return _fail(claim, str(exc))
    except FileNotFoundError:
        return _fail(claim, "The original image is missing from storage")
    except (InferenceTimeout, JobTimeoutException):
        return _fail(claim, f"Processing timed out after {queue.job_timeout()} s")
    except Exception as exc:
        if is_transient(exc):
            return _transient_failure(claim, exc)
        logger.exception("task %s failed", task_id)
        return _fail(claim, f"Processing failed: {describe(exc)}")
    if not tasks.task_complete(claim=claim, result_key=outcome.result_key,
                               processing_time=outcome.processing_time, metrics=outcome.metrics):
        return "skipped"  # the claim was lost (recovered as hung): no waiter, no event from here
    return "completed"


def deliver_webhook(delivery_id: str) -> str:
    """Send one webhook attempt (queue ``{QUICKBG_QUEUE}-webhooks``); it records its outcome
    and schedules the next attempt itself (``services.webhooks``)."""
    return webhooks.webhook_deliver(delivery_id=delivery_id)


def _fail(claim: tasks.Claim, message: str) -> str:
    """Record the failure; ``"skipped"`` when the claim was lost meanwhile (the reconciler took
    the task over), so the waiters and the webhook event hear of it from its new owner only."""
    if tasks.task_fail(claim=claim, message=message):
        return "failed"
    logger.warning("task %s attempt %s lost its claim; failure not recorded", claim.task.pk,
                   claim.attempt)
    return "skipped"


def _transient_failure(claim: tasks.Claim, exc: Exception) -> str:
    message = describe(exc)
    if claim.attempt >= queue.max_attempts():
        logger.error("task %s failed after %s attempts: %r", claim.task.pk, claim.attempt, exc)
        return _fail(claim, f"Failed after {claim.attempt} attempts: {message}")
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
    if isinstance(exc, botocore.exceptions.BotoCoreError) or (
            isinstance(exc, botocore.exceptions.ClientError) and is_transient(exc)):
        return "the storage service was temporarily unavailable"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "a network connection failed"
    return f"an unexpected error ({type(exc).__name__}); the details are in the worker log"
