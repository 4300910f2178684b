"""The one place that turns errors into HTTP answers: ``{"detail": "..."}`` with a status.

Services, selectors and the pipeline raise ``removal.errors.QuickBGError`` subclasses, which
know nothing of HTTP; ``STATUS`` below maps each to its status code (the first match wins).
DRF's own errors keep their codes; validation errors also carry ``errors``, field by field.

Views that speak remove.bg's API (``error_style = "removebg"``) answer in remove.bg's shape
instead, ``{"errors": [{"title", "code", "detail"?}]}`` with remove.bg's codes
(``REMOVEBG_CODES``: ``unknown_foreground``, ``file_too_large``, ``invalid_parameter`` naming
the parameter in ``source.parameter``, ``insufficient_credits``, ``rate_limit_exceeded``; the
title is the same message the native API sends as ``detail``): 400 bad input, 402 credits used up,
403 a missing or unknown ``X-Api-Key`` (401 for a revoked or expired one, saying so), 429
throttled (with ``Retry-After``), 504 past ``QUICKBG_SYNC_TIMEOUT`` (with the task id).
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.authentication import KeyNotAccepted
from removal.errors import (
    Conflict,
    Gone,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    OutOfCredits,
    QuickBGError,
    TimedOut,
    TooManyTasks,
)
from removal.pipeline.errors import FileTooLarge, InvalidOption
from removal.pipeline.trim import NoForeground


class IdempotencyMismatch(QuickBGError):
    """An Idempotency-Key was reused with a different request body."""


class BodyTooLarge(QuickBGError):
    """The request body is over ``QUICKBG_MAX_BODY_MB`` (``removal.api.limits``)."""


STATUS: tuple[tuple[type[QuickBGError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Gone, status.HTTP_410_GONE),
    (Conflict, status.HTTP_409_CONFLICT),
    (TooManyTasks, status.HTTP_429_TOO_MANY_REQUESTS),
    (OutOfCredits, status.HTTP_402_PAYMENT_REQUIRED),
    (TimedOut, status.HTTP_504_GATEWAY_TIMEOUT),
    (IdempotencyMismatch, status.HTTP_422_UNPROCESSABLE_ENTITY),
    (BodyTooLarge, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (ModelUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
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


REMOVEBG_CODES: tuple[tuple[type[QuickBGError], str], ...] = (
    (TooManyTasks, "rate_limit_exceeded"),
    (OutOfCredits, "insufficient_credits"),
    (TimedOut, "timeout"),
    (NotFound, "not_found"),
    (NoForeground, "unknown_foreground"),
    (FileTooLarge, "file_too_large"),
    (BodyTooLarge, "file_too_large"),
    (InvalidOption, "invalid_parameter"),
    (InvalidInput, "invalid_input"),
)


def _removebg_error(exc, response: Response | None) -> Response | None:
    """remove.bg's error shape for ``exc`` (``response`` is DRF's answer, if it made one)."""
    error: dict = {}
    if isinstance(exc, QuickBGError):
        code = next((c for cls, c in REMOVEBG_CODES if isinstance(exc, cls)), "invalid_input")
        error = {"title": exc.detail, "code": code}
        if isinstance(exc, TimedOut):
            error["task_id"] = exc.task_id
        if isinstance(exc, InvalidOption):
            error["detail"] = f"Invalid value for parameter {exc.field}: {exc.message}"
            error["source"] = {"parameter": exc.field}
        response = Response(status=status_for(exc))
        if isinstance(exc, TooManyTasks):
            response["Retry-After"] = str(exc.retry_after)
    elif response is None:
        return None
    elif isinstance(exc, KeyNotAccepted) and exc.reason in ("revoked", "expired"):
        error = {"title": str(exc.detail), "code": f"api_key_{exc.reason}"}
        response.status_code = status.HTTP_401_UNAUTHORIZED
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        missing = isinstance(exc, exceptions.NotAuthenticated)
        error = {"title": "Missing API Key" if missing else "Invalid API Key",
                 "code": "auth_failed",
                 "detail": "Send your key from POST /api/v1/api-keys as the X-Api-Key header"}
        response.status_code = status.HTTP_403_FORBIDDEN
    elif isinstance(exc, exceptions.Throttled):
        error = {"title": "Rate limit exceeded", "code": "rate_limit_exceeded",
                 "detail": str(exc.detail)}
    elif isinstance(exc, exceptions.ValidationError):
        error = {"title": _first_message(exc.detail), "code": "invalid_input"}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        error = {"title": str(getattr(exc, "detail", exc)),
                 "code": getattr(exc, "default_code", "error")}
    response.data = {"errors": [error]}
    for header in ("WWW-Authenticate",):
        if response.status_code != status.HTTP_401_UNAUTHORIZED and header in response:
            del response[header]
    return response


def exception_handler(exc, context):
    if getattr(context.get("view"), "error_style", None) == "removebg":
        if isinstance(exc, QuickBGError):
            return _removebg_error(exc, None)
        return _removebg_error(exc, drf_exception_handler(exc, context))
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
