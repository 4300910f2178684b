"""``Idempotency-Key`` on ``POST /uploads`` and ``POST /batches``: run the request once,
replay its HTTP answer.

This is the API layer's own concern (it stores status codes and response bodies), so it lives
here and not in the services. The record is kept 24 h per (owner, key).

The placeholder row (no response yet) is committed before the upload runs, so a concurrent
repeat sees "in progress". If the process dies mid-request (SIGKILL, OOM, a gunicorn timeout
kill) nothing removes it; a placeholder older than ``QUICKBG_IDEMPOTENCY_PENDING_SECONDS`` (a
request cannot have run that long: the default 120 s is above gunicorn's timeout) is therefore
abandoned, and the next request with the key takes it over and runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from removal.api.errors import IdempotencyMismatch
from removal.errors import Conflict, InvalidInput
from removal.models import IdempotencyKey

IDEMPOTENCY_WINDOW = IdempotencyKey.WINDOW


def request_hash(data: dict) -> str:
    """What makes two requests "the same": every field that changes the request (a file's
    content, a batch's ``files`` in order or its ``archive``, ``s3_key``, ``image_url``,
    ``webhook_url``, ``model``, the options, and any field added later), so the same key with
    any other value is a mismatch (422). Files count by their bytes, not their names."""
    digest = hashlib.sha256()
    for name in sorted(data):
        value = data[name]
        digest.update(b"\0" + name.encode() + b"=")
        if _is_file(value):
            _update_with_file(digest, value)
        elif isinstance(value, list) and value and all(_is_file(v) for v in value):
            # Each member's own digest, in order: unambiguous whatever the members' sizes.
            for member in value:
                one = hashlib.sha256()
                _update_with_file(one, member)
                digest.update(b"[" + one.hexdigest().encode() + b"]")
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _is_file(value) -> bool:
    return hasattr(value, "chunks")  # an uploaded file


def _update_with_file(digest, file) -> None:
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)


def perform_once(*, request, data: dict,
                 perform: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
    """A create view's answer: ``perform()`` as it is, or, when the request carries an
    ``Idempotency-Key``, through ``replay_or_perform`` over ``data`` (the validated fields)."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return perform()
    return replay_or_perform(owner=request.user, key=key, request_hash=request_hash(data),
                             perform=perform)


def replay_or_perform(*, owner, key: str, request_hash: str,
                      perform: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
    """Run ``perform`` once per (owner, Idempotency-Key) within 24 h and replay its answer.

    The same key with a different request body is refused (422); a key whose first request is
    still running is a conflict (409). A failed first attempt frees the key so the client can
    try again.
    """
    if len(key) > 255:
        raise InvalidInput("Idempotency-Key must be at most 255 characters")
    IdempotencyKey.objects.filter(
        owner=owner, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW
    ).delete()
    abandoned_before = timezone.now() - timedelta(
        seconds=settings.QUICKBG_IDEMPOTENCY_PENDING_SECONDS
    )
    # An abandoned placeholder of the same request is taken over (a guarded update, so of two
    # concurrent retries only one wins; the other sees a fresh placeholder: 409).
    taken_over = IdempotencyKey.objects.filter(
        owner=owner, key=key, request_hash=request_hash, response_status=None,
        created_at__lt=abandoned_before,
    ).update(created_at=timezone.now())
    try:
        if taken_over:
            record = IdempotencyKey.objects.get(owner=owner, key=key)
        else:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    owner=owner, key=key, request_hash=request_hash
                )
    except IntegrityError:
        record = IdempotencyKey.objects.get(owner=owner, key=key)
        if record.request_hash != request_hash:
            raise IdempotencyMismatch(
                "This Idempotency-Key was already used with a different request body"
            ) from None
        if record.response_status is None:
            raise Conflict("A request with this Idempotency-Key is still in progress") from None
        return record.response_status, record.response_body
    try:
        status, body = perform()
    except BaseException:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        raise
    IdempotencyKey.objects.filter(pk=record.pk).update(response_status=status, response_body=body)
    return status, body
