"""Where originals and results live, and how download URLs are made.

Everything goes through Django's ``default_storage``: S3 (django-storages) when
``AWS_STORAGE_BUCKET_NAME`` is set, a local folder otherwise. On S3 a download URL is a
presigned GET; on local storage it is a URL to ``/api/v1/files/<token>`` whose token is signed
with ``SECRET_KEY`` and expires after ``QUICKBG_URL_EXPIRY`` seconds, like a presigned URL.

Nothing a user names decides how a stored file is served (issue 14, a stored XSS through an
HTML/PNG polyglot): originals and results are stored under server-chosen names with the
extension of the format detected from their content (``original.png``, never ``evil.html``); the
user's file name lives only in the Upload row. Every download link carries the detected image
type and ``Content-Disposition: attachment``: on S3 the object is written with that
``ContentType`` and the presigned GET overrides ``ResponseContentType`` and
``ResponseContentDisposition``; on local storage ``/api/v1/files/<token>`` answers with the type
named in the signed token, ``X-Content-Type-Options: nosniff``, ``attachment`` and a CSP
``sandbox``.
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

# The only types a download link ever announces; anything else is served as bytes.
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
SAFE_CONTENT_TYPES = frozenset(IMAGE_TYPES.values())
FALLBACK_CONTENT_TYPE = "application/octet-stream"


# A result may also be remove.bg's ZIP (``format=zip``): its own type where the answer is the
# bytes themselves (``POST /v1.0/removebg``), never announced by a download link.
OTHER_TYPES = {"ZIP": "application/zip"}


def content_type_for(fmt: str) -> str:
    """The MIME type of a detected format (``Upload.format``, or a result's extension)."""
    fmt = (fmt or "").upper()
    fmt = {"JPG": "JPEG"}.get(fmt, fmt)
    return IMAGE_TYPES.get(fmt) or OTHER_TYPES.get(fmt, FALLBACK_CONTENT_TYPE)


def is_s3() -> bool:
    return bool(settings.AWS_STORAGE_BUCKET_NAME)


def safe_filename(name: str) -> str:
    base = posixpath.basename((name or "").replace("\\", "/"))
    cleaned = _UNSAFE_NAME.sub("_", base).strip("._")[:100]
    return cleaned or "image"


def original_key(*, owner_id: int, upload_id: uuid.UUID, fmt: str) -> str:
    """Server-chosen: the extension is the detected format's, never the client's file name's."""
    return f"originals/{owner_id}/{upload_id}/original.{EXTENSIONS[fmt]}"


def background_key(*, owner_id: int, upload_id: uuid.UUID) -> str:
    """The caller's own background image (``bg_image_file``), beside the upload's original."""
    return f"originals/{owner_id}/{upload_id}/background"


def result_key(*, task_id: uuid.UUID, extension: str = "png") -> str:
    """Fixed by the task id, so a task that runs twice overwrites rather than duplicates."""
    return f"results/{task_id}.{extension}"


def extension_of(key: str) -> str:
    """The format of a stored result, as its key names it (``png``, ``webp``, ``jpg``, ``zip``):
    ``result_key`` wrote the encoded format's extension."""
    return key.rsplit(".", 1)[-1]


def content_type_of(key: str) -> str:
    """The MIME type of a stored result, from its key (``content_type_for`` its extension)."""
    return content_type_for(extension_of(key))


def is_well_formed_key(key: str) -> bool:
    """A key a client may name (the ``s3_key`` upload variant): relative, at most 512
    characters, no empty, ``.`` or ``..`` part, no backslash, percent or control character."""
    return not (
        not key
        or len(key) > 512
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or "%" in key
        or any(ord(ch) < 32 for ch in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    )


def incoming_prefix(owner_id: int) -> str:
    """Where a user's own objects may be placed for the ``s3_key`` upload variant."""
    return f"incoming/{owner_id}/"


def write(key: str, data: bytes, *, content_type: str = FALLBACK_CONTENT_TYPE) -> str:
    """Store ``data`` at exactly ``key``, replacing what is there, and return the key.

    ``content_type`` becomes the S3 object's ``ContentType`` (django-storages would otherwise
    guess it from the key); local storage has no metadata and ignores it. Both backends
    overwrite in one step (``FileSystemStorage(allow_overwrite=True)``, S3's
    ``file_overwrite``), so a result written twice costs no extra HEAD or DELETE.
    """
    content = ContentFile(data)
    content.content_type = content_type  # read by django-storages' S3 _get_write_parameters
    saved = default_storage.save(key, content)
    if saved != key:  # a backend configured to rename instead of overwrite
        raise RuntimeError(f"storage stored {key!r} as {saved!r}; enable overwriting")
    return key


def read(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()


def open_stream(key: str):
    """The object as a binary file to read in chunks (raises ``FileNotFoundError``, or the
    backend's error, when it is missing); the caller closes it."""
    return default_storage.open(key, "rb")


def probe() -> None:
    """Write a small object, read it back, delete it: storage is reachable, writable and
    readable, or this raises (the health check's storage probe)."""
    payload = f"quickbg health probe {uuid.uuid4().hex}".encode()
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(payload))
    try:
        with default_storage.open(name, "rb") as fh:
            if fh.read() != payload:
                raise OSError("storage returned other bytes than were written")
    finally:
        default_storage.delete(name)


def exists(key: str) -> bool:
    return default_storage.exists(key)


def size(key: str) -> int:
    return default_storage.size(key)


def download_url(key: str, *, content_type: str, request=None,
                 filename: str | None = None) -> str:
    """A time-limited URL that returns the object's bytes without further authentication.

    The answer is always ``content_type`` (an image type from ``content_type_for``; anything
    else becomes ``application/octet-stream``) as an attachment named ``filename`` (default: the
    key's last part), whatever the object's name or stored metadata say.
    """
    if content_type not in SAFE_CONTENT_TYPES:
        content_type = FALLBACK_CONTENT_TYPE
    filename = safe_filename(filename or key.rsplit("/", 1)[-1])
    expiry = settings.QUICKBG_URL_EXPIRY
    if is_s3():
        params = {"ResponseContentDisposition": f'attachment; filename="{filename}"',
                  "ResponseContentType": content_type}
        return default_storage.url(key, parameters=params, expire=expiry)
    token = signing.dumps({"k": key, "f": filename, "t": content_type}, salt=_SIGNING_SALT,
                          compress=True)
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


def resolve_download_token(token: str) -> tuple[str, str, str]:
    """Return ``(key, filename, content_type)`` for a valid, unexpired token; raise
    ``signing.BadSignature``. The type is always one of ``SAFE_CONTENT_TYPES`` or bytes."""
    payload = signing.loads(token, salt=_SIGNING_SALT, max_age=settings.QUICKBG_URL_EXPIRY)
    content_type = payload.get("t")
    if content_type not in SAFE_CONTENT_TYPES:
        content_type = FALLBACK_CONTENT_TYPE
    key = payload["k"]
    return key, payload.get("f") or safe_filename(key.rsplit("/", 1)[-1]), content_type


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
