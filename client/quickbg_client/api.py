"""``Client``: QuickBG's public API with an API key, every request retried (``retry.py``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from quickbg_client import errors, retry
from quickbg_client.config import resolve
from quickbg_client.options import EXTENSIONS, form_fields
from quickbg_client.results import FileResult

Image = str | os.PathLike | bytes
USER_AGENT = "quickbg-client/0.1"
CHUNK = 1024 * 1024
# The server's models when it has no GET /api/v1/models and its schema does not say.
FALLBACK_MODELS = ("isnet-general-use",)


@dataclass(frozen=True)
class Accepted:
    """``POST /api/v1/uploads``'s 202: the upload and its task."""

    upload_id: str
    task_id: str
    status: str
    message: str


@dataclass(frozen=True)
class BatchAccepted:
    """``POST /api/v1/batches``'s 202: the batch, its members' task ids in the order sent
    (refused members left out) and the refused ones (``{"name", "detail"}``)."""

    batch_id: str
    task_ids: list[str]
    rejected: list[dict]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def idempotency_key(sha256: str, options: dict[str, object], nonce: str = "") -> str:
    """The ``Idempotency-Key`` of one input: its content hash plus its options (and, for
    ``--force``, a nonce), so a retried or resumed upload of the same request is replayed by
    the server instead of making a second task."""
    canonical = json.dumps(form_fields(options), sort_keys=True)
    digest = hashlib.sha256(f"{sha256}\0{canonical}\0{nonce}".encode()).hexdigest()
    return f"quickbg-client-{digest}"


def batch_idempotency_key(sha256s: list[str], options: dict[str, object],
                          nonce: str = "") -> str:
    """The ``Idempotency-Key`` of one batch: its members' content hashes in order plus the
    options (and ``--force``'s nonce): a resent batch of the same files is replayed."""
    canonical = json.dumps(form_fields(options), sort_keys=True)
    members = ",".join(sha256s)
    digest = hashlib.sha256(f"batch\0{members}\0{canonical}\0{nonce}".encode()).hexdigest()
    return f"quickbg-client-batch-{digest}"


class Client:
    """QuickBG over HTTP with an API key (``X-Api-Key``).

    ``url`` and ``api_key`` default to ``QUICKBG_URL``/``QUICKBG_API_KEY`` or the config file
    (``quickbg_client.config``). Thread-safe: one client may serve many threads (the folder
    runner does). Use it as a context manager, or call ``close()``.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 120.0, retries: retry.RetryPolicy | None = None,
                 poll_interval: float = 0.5, max_connections: int = 32,
                 on_retry: Callable[[str], None] | None = None,
                 transport: httpx.BaseTransport | None = None):
        settings = resolve(url, api_key)
        self.url = settings.url
        self.retries = retries or retry.RetryPolicy()
        self.poll_interval = poll_interval
        self.on_retry = on_retry
        self.http = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"X-Api-Key": settings.api_key, "User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            transport=transport,
        )
        # Download links carry their own signature (they may point at S3): no API key on them.
        self.links = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0),
                                  headers={"User-Agent": USER_AGENT},
                                  limits=httpx.Limits(max_connections=max_connections),
                                  transport=transport)

    def close(self) -> None:
        self.http.close()
        self.links.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request ----------------------------------------------------------------------

    def request(self, method: str, url: str, *, body: Callable[[], dict] | None = None,
                retry_on: Callable[[httpx.Response], bool] | None = None,
                **kwargs: Any) -> httpx.Response:
        """One request, retried per the policy; an error status raises ``APIError`` (its
        subclasses for 401/403 and 402). ``body()`` builds fresh request arguments (open
        files, ...) for every attempt."""

        def attempt() -> httpx.Response:
            extra = body() if body else {}
            try:
                return self.http.request(method, url, **kwargs, **extra)
            finally:
                parts = extra.get("files") or {}
                for part in (parts.values() if isinstance(parts, dict) else
                             (value for _, value in parts)):
                    part[1].close()

        response = retry.send(attempt, self.retries, retry_on=retry_on, on_retry=self.on_retry)
        if response.is_error:
            raise errors.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # --- the API --------------------------------------------------------------------------

    def upload(self, image: Image | BinaryIO, *, filename: str | None = None,
               idempotency_key: str | None = None, **options: object) -> Accepted:
        """``POST /api/v1/uploads``: queue one image; ``options`` are the output options (and
        ``model``). With ``idempotency_key`` a repeat (a retry after a lost answer, a resumed
        run) gets the first answer back; a 409 "still in progress" is waited out."""
        fields = form_fields(options)
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            name = filename or path.name

            def body() -> dict:
                # Opened per attempt, so a retry sends the whole file again; httpx streams it
                # (with a Content-Length) rather than reading it into memory.
                return {"files": {"file": (name, open(path, "rb"))}, "data": fields}
        else:
            data = image if isinstance(image, bytes) else image.read()
            name = filename or "image"

            def body() -> dict:
                return {"files": {"file": (name, io.BytesIO(data))}, "data": fields}

        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        in_progress = (lambda r: r.status_code == 409) if idempotency_key else None
        answer = self._json("POST", "/api/v1/uploads", body=body, headers=headers,
                            retry_on=in_progress)
        return Accepted(upload_id=answer["upload_id"], task_id=answer["task_id"],
                        status=answer["status"], message=answer.get("message", ""))

    def batch(self, files: list[tuple[str | os.PathLike, str]], *,
              idempotency_key: str | None = None, **options: object) -> BatchAccepted:
        """``POST /api/v1/batches``: queue many images (``(path, name)`` pairs) in one request,
        each a task of its own. With ``idempotency_key`` a repeat gets the first answer back
        (a 409 "still in progress" is waited out), as ``upload`` has it."""
        fields = form_fields(options)

        def body() -> dict:
            return {"files": [("files", (name, open(path, "rb"))) for path, name in files],
                    "data": fields}

        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        in_progress = (lambda r: r.status_code == 409) if idempotency_key else None
        answer = self._json("POST", "/api/v1/batches", body=body, headers=headers,
                            retry_on=in_progress)
        return BatchAccepted(batch_id=answer["batch_id"], task_ids=list(answer["task_ids"]),
                             rejected=list(answer.get("rejected") or []))

    def task(self, task_id: str) -> dict:
        """``GET /api/v1/tasks/{id}``."""
        return self._json("GET", f"/api/v1/tasks/{task_id}")

    def recent_tasks(self, page_size: int = 100) -> list[dict]:
        """The first page of ``GET /api/v1/tasks`` (newest first)."""
        return self._json("GET", "/api/v1/tasks", params={"page_size": page_size})["results"]

    def retry_task(self, task_id: str) -> dict:
        """``POST /api/v1/tasks/{id}/retry``: a failed task back on the queue (no new task)."""
        return self._json("POST", f"/api/v1/tasks/{task_id}/retry")

    def wait(self, task_id: str, *, timeout: float | None = None) -> dict:
        """Poll the task until it is completed (returned) or failed (``TaskFailed``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = self.poll_interval
        while True:
            task = self.task(task_id)
            if task["status"] == "completed":
                return task
            if task["status"] in ("failed", "expired"):
                raise errors.TaskFailed(task_id, task.get("error_message") or task["status"])
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)

    def download(self, task: dict) -> tuple[bytes, str]:
        """The result of a completed task and its extension (png, webp, jpg or zip)."""
        url = task.get("presigned_url")
        if not url:
            raise errors.TaskFailed(task["task_id"], f"the task is {task['status']}, no result")
        response = retry.send(lambda: self.links.get(url), self.retries, on_retry=self.on_retry)
        if response.status_code in (403, 404):  # an expired link: ask for a fresh one
            fresh = self.task(task["task_id"])
            response = retry.send(lambda: self.links.get(fresh["presigned_url"]), self.retries,
                                  on_retry=self.on_retry)
        if response.is_error:
            raise errors.from_response(response)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return response.content, EXTENSIONS.get(content_type, "png")

    def remove(self, image: Image, **options: object) -> bytes:
        """Remove the background of one image (a path, or the bytes) and return the result.

        Blocks until the task is done; raises ``TaskFailed`` if it failed and ``APIError`` for
        a refused upload (``detail`` is the server's message)."""
        if isinstance(image, bytes):
            sha = hashlib.sha256(image).hexdigest()
        else:
            sha = file_sha256(image)
        accepted = self.upload(image, idempotency_key=idempotency_key(sha, options), **options)
        task = self.wait(accepted.task_id)
        return self.download(task)[0]

    def remove_folder(self, source: str | os.PathLike | Iterable[str | os.PathLike],
                      output: str | os.PathLike, *, jobs: int = 4,
                      glob: Iterable[str] | None = None, force: bool = False,
                      watch: bool = False, max_pending: int = 16,
                      on_watching: Callable[[], None] | None = None,
                      batch_size: int | None = None, batch_max_bytes: int | None = None,
                      **options: object) -> Iterator[FileResult]:
        """Process every image under ``source`` (a folder, a file, or several) into the mirrored
        tree under ``output``, ``jobs`` uploads at a time, and yield one ``FileResult`` per
        file as it finishes. Resumable through the manifest in ``output`` (see the README);
        ``force`` redoes files already done; ``watch`` keeps going as files appear
        (``on_watching()`` is called once the first pass is listed). Files of at most
        ``batch_max_bytes`` go ``batch_size`` to a ``POST /api/v1/batches`` (1: every file on
        its own); the defaults are ``runner.BATCH_SIZE`` and ``runner.BATCH_MAX_BYTES``."""
        from quickbg_client.runner import BATCH_MAX_BYTES, BATCH_SIZE, FolderRun

        sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        run = FolderRun(self, [Path(s) for s in sources], Path(output), jobs=jobs,
                        patterns=list(glob or ()), force=force, watch=watch,
                        max_pending=max_pending, options=dict(options),
                        on_watching=on_watching,
                        batch_size=BATCH_SIZE if batch_size is None else batch_size,
                        batch_max_bytes=(BATCH_MAX_BYTES if batch_max_bytes is None
                                         else batch_max_bytes))
        return run.results()

    def account(self) -> dict:
        """This month's credits (``GET /v1.0/account``): ``{"total", "monthly_limit",
        "remaining", ...}``."""
        return self._json("GET", "/v1.0/account")["data"]["attributes"]["credits"]

    def models(self) -> list[dict]:
        """The models the server offers: ``GET /api/v1/models`` where the server has it, else
        the ``model`` choices of its OpenAPI schema, else the one model."""
        try:
            answer = self._json("GET", "/api/v1/models")
        except errors.APIError as exc:
            if exc.status not in (404, 405):
                raise
        else:
            items = answer.get("results", answer.get("models")) if isinstance(answer, dict) \
                else answer
            return [item if isinstance(item, dict) else {"name": str(item)} for item in items]
        try:
            schema = self._json("GET", "/api/v1/schema", params={"format": "json"})
            names = _schema_models(schema)
        except (errors.APIError, ValueError):
            names = []
        return [{"name": name} for name in (names or FALLBACK_MODELS)]


def _schema_models(schema: dict) -> list[str]:
    """The ``model`` enum of the upload request in an OpenAPI schema."""
    components = schema.get("components", {}).get("schemas", {})
    for name in ("UploadCreateRequest", "UploadCreate"):
        prop = components.get(name, {}).get("properties", {}).get("model", {})
        ref = prop.get("$ref") or next((p.get("$ref") for p in prop.get("allOf", [])), None)
        if ref:
            prop = components.get(ref.rsplit("/", 1)[-1], {})
        if prop.get("enum"):
            return [str(v) for v in prop["enum"] if v]
    return []
