"""Map every error to ``{"detail": "..."}`` with a message a user can act on."""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from removal.errors import QuickBGError
from removal.pipeline.validate import InvalidImage


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
    if isinstance(exc, InvalidImage):  # the pipeline's own error: a message for the user
        return Response({"detail": str(exc)}, status=exc.status_code)
    if isinstance(exc, QuickBGError):
        response = Response({"detail": exc.detail}, status=exc.status_code)
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _first_message(exc.detail), "errors": exc.detail}
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response
