"""Where originals and results live, and how download URLs are made.

Everything goes through Django's ``default_storage``: S3 (django-storages) when
``AWS_STORAGE_BUCKET_NAME`` is set, a local folder otherwise. On S3 a download URL is a
presigned GET; on local storage it is a URL to ``/api/v1/files/<token>`` whose token is signed
with ``SECRET_KEY`` and expires after ``QUICKBG_URL_EXPIRY`` seconds, like a presigned URL.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

_SIGNING_SALT = "quickbg.download"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def is_s3() -> bool:
    return bool(settings.AWS_STORAGE_BUCKET_NAME)


def safe_filename(name: str) -> str:
    base = posixpath.basename((name or "").replace("\\", "/"))
    cleaned = _UNSAFE_NAME.sub("_", base).strip("._")[:100]
    return cleaned or "image"


def original_key(*, owner_id: int, upload_id: uuid.UUID, filename: str) -> str:
    return f"originals/{owner_id}/{upload_id}/{safe_filename(filename)}"


def result_key(*, task_id: uuid.UUID, extension: str = "png") -> str:
    """Fixed by the task id, so a task that runs twice overwrites rather than duplicates."""
    return f"results/{task_id}.{extension}"


def incoming_prefix(owner_id: int) -> str:
    """Where a user's own objects may be placed for the ``s3_key`` upload variant."""
    return f"incoming/{owner_id}/"


def write(key: str, data: bytes) -> str:
    """Store ``data`` at exactly ``key``, replacing what is there, and return the key.

    Both backends overwrite in one step (``FileSystemStorage(allow_overwrite=True)``, S3's
    ``file_overwrite``), so a result written twice costs no extra HEAD or DELETE.
    """
    saved = default_storage.save(key, ContentFile(data))
    if saved != key:  # a backend configured to rename instead of overwrite
        raise RuntimeError(f"storage stored {key!r} as {saved!r}; enable overwriting")
    return key


def read(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()


def exists(key: str) -> bool:
    return default_storage.exists(key)


def size(key: str) -> int:
    return default_storage.size(key)


def download_url(key: str, *, request=None, filename: str | None = None) -> str:
    """A time-limited URL that returns the object's bytes without further authentication."""
    expiry = settings.QUICKBG_URL_EXPIRY
    if is_s3():
        params = None
        if filename:
            params = {"ResponseContentDisposition": f'attachment; filename="{filename}"'}
        return default_storage.url(key, parameters=params, expire=expiry)
    token = signing.dumps({"k": key, "f": filename or ""}, salt=_SIGNING_SALT, compress=True)
    path = reverse("file-download", kwargs={"token": token})
    return request.build_absolute_uri(path) if request is not None else path


def presigned_post(key: str, *, max_bytes: int) -> dict:
    """A presigned S3 POST for exactly ``key``, refusing bodies over ``max_bytes``."""
    client = default_storage.connection.meta.client
    return client.generate_presigned_post(
        Bucket=settings.AWS_STORAGE_BUCKET_NAME, Key=key,
        Conditions=[["content-length-range", 1, max_bytes]],
        ExpiresIn=settings.QUICKBG_URL_EXPIRY,
    )


def resolve_download_token(token: str) -> tuple[str, str]:
    """Return ``(key, filename)`` for a valid, unexpired token; raise ``signing.BadSignature``."""
    payload = signing.loads(token, salt=_SIGNING_SALT, max_age=settings.QUICKBG_URL_EXPIRY)
    return payload["k"], payload.get("f") or ""


def check() -> None:
    """Raise if the storage backend is unreachable (used by the health endpoint)."""
    if is_s3():
        client = default_storage.connection.meta.client
        client.head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)
    else:
        location = default_storage.location
        os.makedirs(location, exist_ok=True)
        if not os.access(location, os.W_OK):
            raise PermissionError(f"media folder {location} is not writable")


# S3's DeleteObjects takes at most 1000 keys per request.
DELETE_BATCH = 1000


def result_keys_of(task_id: uuid.UUID) -> list[str]:
    """Every key a task's result may have (a worker may be writing one right now)."""
    return [result_key(task_id=task_id, extension=extension) for extension in ("png", "webp")]


def delete_many(keys) -> list[str]:
    """Delete these objects; a missing one is not an error. Returns the keys that failed.

    On S3, one ``DeleteObjects`` request per 1000 keys (``Quiet``: only failures come back);
    on local storage, one unlink per file.
    """
    keys = [key for key in dict.fromkeys(keys) if key]
    failed: list[str] = []
    if is_s3():
        client = default_storage.connection.meta.client
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            names = {default_storage._normalize_name(key): key for key in batch}
            answer = client.delete_objects(
                Bucket=settings.AWS_STORAGE_BUCKET_NAME,
                Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
            )
            failed += [names.get(error["Key"], error["Key"]) for error in answer.get("Errors", [])]
        return failed
    for key in keys:
        try:
            default_storage.delete(key)
        except OSError:
            failed.append(key)
    return failed


def keys_under(prefix: str) -> list[str]:
    """Every key below ``prefix`` (e.g. a user's ``incoming/<id>/``)."""
    if is_s3():
        client = default_storage.connection.meta.client
        base = default_storage._normalize_name(prefix)
        strip = len(default_storage.location.strip("/") + "/") if default_storage.location else 0
        keys = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.AWS_STORAGE_BUCKET_NAME, Prefix=base)
        for page in pages:
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        return keys
    root = os.path.join(default_storage.location, prefix)
    keys = []
    for folder, _dirs, files in os.walk(root):
        relative = os.path.relpath(folder, default_storage.location).replace(os.sep, "/")
        keys += [f"{relative}/{name}" for name in files]
    return keys


def delete_quietly(key: str) -> None:
    try:
        default_storage.delete(key)
    except Exception:  # noqa: BLE001 - best-effort clean-up of an orphan
        pass
