"""The application's error type, and how worker-side failures are classified and described."""

from __future__ import annotations

import botocore.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError


class QuickBGError(Exception):
    """An error with a message for the API user; the exception handler maps it to its status."""

    status_code = 400

    def __init__(self, detail: str, status_code: int | None = None):
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class NotFound(QuickBGError):
    status_code = 404


class Conflict(QuickBGError):
    status_code = 409


class TooManyTasks(QuickBGError):
    """The caller has too many unfinished tasks; ``retry_after`` seconds is a fair wait."""

    status_code = 429

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


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
