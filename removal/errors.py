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
    """A one-line, user-readable description without file-system paths or stack traces."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
