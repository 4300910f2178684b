"""The one place that turns errors into HTTP answers: ``{"detail": "..."}`` with a status.

Services, selectors and the pipeline raise ``removal.errors.QuickBGError`` subclasses, which
know nothing of HTTP; ``STATUS`` below maps each to its status code (the first match wins).
DRF's own errors keep their codes; validation errors also carry ``errors``, field by field.
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from removal.errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    QuickBGError,
    TooManyTasks,
)


class IdempotencyMismatch(QuickBGError):
    """An Idempotency-Key was reused with a different request body."""


STATUS: tuple[tuple[type[QuickBGError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Gone, status.HTTP_410_GONE),
    (Conflict, status.HTTP_409_CONFLICT),
    (TooManyTasks, status.HTTP_429_TOO_MANY_REQUESTS),
    (IdempotencyMismatch, status.HTTP_422_UNPROCESSABLE_ENTITY),
    (InvalidInput, status.HTTP_400_BAD_REQUEST),
)


def status_for(exc: QuickBGError) -> int:
    for error_class, code in STATUS:
        if isinstance(exc, error_class):
            return code
    return status.HTTP_400_BAD_REQUEST


def _first_message(detail, field: str | None = None) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key == "non_field_errors" else key
            return _first_message(value, name or field)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], field)
    text = str(detail)
    return f"{field}: {text}" if field else text


def exception_handler(exc, context):
    if isinstance(exc, QuickBGError):
        response = Response({"detail": exc.detail}, status=status_for(exc))
        if isinstance(exc, TooManyTasks):
            response["Retry-After"] = str(exc.retry_after)
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _first_message(exc.detail), "errors": exc.detail}
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response
