"""Request bodies over ``QUICKBG_MAX_BODY_MB`` are refused before they are read (issue 17).

Three layers, because a body can arrive three ways:

* ``BodyLimitMiddleware`` (first in ``MIDDLEWARE``, so on every endpoint, the unauthenticated
  ones included) answers 413 ``{"detail": ...}`` (on ``/v1.0/``, remove.bg's
  ``{"errors": [{"title", "code": "file_too_large"}]}``) from the ``Content-Length`` header alone,
  without reading a byte of the body.
* A chunked body (no ``Content-Length``), when the server decodes the chunks for us (gunicorn
  says so with ``wsgi.input_terminated``), is spooled while it streams in and cut off with the
  same 413 as soon as it passes the limit; below it, the view gets it as an ordinary body
  (Django and DRF would otherwise read a body without ``Content-Length`` as empty). A server
  that hands over the raw chunked stream (Django's development server) gets 411.
* ``CappedUploadHandler`` (first in ``FILE_UPLOAD_HANDLERS``) counts the file bytes the
  multipart parser hands on and stops at the limit, closing (and so deleting) any temporary
  file the later handlers started; Django would otherwise spool file parts of any size to disk
  before a view runs.

The body limit is a margin above the file limit (``QUICKBG_MAX_UPLOAD_MB``), so a file somewhat
over it still reaches the validator and gets its message ("File size (12.5MB) exceeds maximum
(10MB)").
"""

from __future__ import annotations

import tempfile

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse

from removal.api.errors import BodyTooLarge

_READ_CHUNK = 64 * 1024


BATCHES_PATH = "/api/v1/batches"  # the one endpoint whose body holds many images


def body_limit(request=None) -> int:
    """``QUICKBG_MAX_BODY_MB``; for ``POST /api/v1/batches``, the batch request limit
    (``QUICKBG_MAX_BATCH_MB``) plus the same margin, if that is larger."""
    limit = settings.QUICKBG_MAX_BODY_MB
    if request is not None and request.path_info.rstrip("/") == BATCHES_PATH:
        limit = max(limit, settings.QUICKBG_MAX_BATCH_MB + BODY_MARGIN_MB)
    return int(limit * 1024 * 1024)


BODY_MARGIN_MB = 5


def _mb(n: float) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


def too_large(request=None) -> BodyTooLarge:
    return BodyTooLarge(f"Request body too large (maximum {_mb(body_limit(request))}MB)")


REMOVEBG_PREFIX = "/v1.0/"  # remove.bg's API answers errors in its own shape


def _answer(exc: BodyTooLarge, request=None) -> JsonResponse:
    if request is not None and request.path_info.startswith(REMOVEBG_PREFIX):
        return JsonResponse({"errors": [{"title": exc.detail, "code": "file_too_large"}]},
                            status=413)
    return JsonResponse({"detail": exc.detail}, status=413)


def _spool(stream, limit: int, request=None) -> tuple[tempfile.SpooledTemporaryFile, int]:
    """Copy a decoded chunked body into a spooled temporary file (memory, then disk past
    ``FILE_UPLOAD_MAX_MEMORY_SIZE``), raising ``BodyTooLarge`` - with the copy deleted - as
    soon as it passes ``limit``. Never holds more than one read chunk beyond the limit."""
    spool = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
    total = 0
    try:
        while chunk := stream.read(_READ_CHUNK):
            total += len(chunk)
            if total > limit:
                raise too_large(request)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, total


class BodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        length = meta.get("CONTENT_LENGTH")
        if length:
            try:
                declared = int(length)
            except ValueError:
                return JsonResponse({"detail": "Invalid Content-Length header"}, status=400)
            if declared > body_limit(request):
                return _answer(too_large(request), request)
        elif "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            if not meta.get("wsgi.input_terminated"):
                return JsonResponse(
                    {"detail": "Chunked request bodies are not supported by this server; "
                               "send a Content-Length"}, status=411)
            # Django and DRF read nothing without a Content-Length, so the decoded chunks are
            # spooled here - and cut off at the limit - and then handed on as a body of known
            # length. (``_stream`` is what ``HttpRequest.read`` reads.)
            try:
                spool, size = _spool(meta["wsgi.input"], body_limit(request), request)
            except BodyTooLarge as exc:
                return _answer(exc, request)
            meta["CONTENT_LENGTH"] = str(size)
            request._stream = LimitedStream(spool, size)
            try:
                return self.get_response(request)
            finally:
                spool.close()
        return self.get_response(request)

    def process_exception(self, request, exception):
        """Views outside DRF (the admin): the stream cap fired while the form was parsed."""
        if isinstance(exception, BodyTooLarge):
            return _answer(exception, request)
        return None


class CappedUploadHandler(FileUploadHandler):
    """Passes file data on to the next handler, and stops the upload past the body limit."""

    def __init__(self, request=None):
        super().__init__(request)
        self.total = 0

    def receive_data_chunk(self, raw_data, start):
        self.total += len(raw_data)
        if self.total > body_limit(self.request):
            self._discard_partial_files()
            raise too_large(self.request)
        return raw_data

    def file_complete(self, file_size):
        return None

    def _discard_partial_files(self) -> None:
        for handler in getattr(self.request, "upload_handlers", None) or []:
            partial = getattr(handler, "file", None)
            if partial is not None and hasattr(partial, "close"):
                partial.close()  # a TemporaryUploadedFile deletes its file on close
