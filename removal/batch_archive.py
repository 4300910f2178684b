"""The zip of a batch's results (``GET /api/v1/batches/{id}/download``), written as a stream.

Python's ``zipfile`` writes to a non-seekable sink (sizes go in data descriptors after each
entry), so ``batch_zip_chunks`` yields the archive piece by piece while it reads each result from
storage in chunks: memory stays at one chunk, whatever the batch's size. Results are PNG/WebP,
already compressed, so entries are stored, not deflated.

Entries are named after the members' original base names with the result's extension
(``shoe.jpg`` → ``shoe.png``), deduplicated (``shoe (2).png``), never with a directory.
``manifest.json`` comes last and maps every member to its entry, task, status and error; while
the batch is still running it holds the finished part and says so (``"complete": false``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator

from django.utils import timezone

from removal import selectors, storage
from removal.models import Batch, Task
from removal.pipeline.archive import safe_member_name

CHUNK = 256 * 1024


class _Sink:
    """A write-only, non-seekable file object whose bytes are taken out by the generator."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def entry_name(original: str, extension: str, taken: set[str], index: int) -> str:
    base = safe_member_name(original, index)
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = stem.replace("/", "_") or f"file-{index}"
    name, n = f"{stem}.{extension}", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem} ({n}).{extension}"
    taken.add(name.lower())
    return name


def batch_zip_chunks(batch: Batch) -> Iterator[bytes]:
    """Yield the zip of ``batch`` (annotated by ``selectors.batches_with_counts``)."""
    counts = selectors.batch_counts(batch)
    complete = not (counts[Task.Status.QUEUED] or counts[Task.Status.PROCESSING])
    sink = _Sink()
    taken: set[str] = {"manifest.json"}
    members = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, task in enumerate(selectors.batch_members(batch).iterator(), start=1):
            row = {"name": task.upload.original_filename, "task_id": str(task.id),
                   "status": task.status, "error": task.error_message or None, "entry": None}
            members.append(row)
            if task.status != Task.Status.COMPLETED or not task.result_key:
                continue
            try:
                source = storage.open_stream(task.result_key)
            except FileNotFoundError:
                row["error"] = "The result is missing from storage"
                continue
            row["entry"] = entry_name(task.upload.original_filename,
                                      storage.extension_of(task.result_key), taken, index)
            info = zipfile.ZipInfo(row["entry"], date_time=_zip_time(task.finished_at))
            with source, archive.open(info, "w", force_zip64=True) as entry:
                while chunk := source.read(CHUNK):
                    entry.write(chunk)
                    yield sink.take()
            yield sink.take()
        manifest = {
            "batch_id": str(batch.id),
            "status": selectors.batch_status(counts),
            "complete": complete,
            "note": None if complete else
            "The batch is still running: this archive holds the results finished so far.",
            "generated_at": timezone.now().isoformat(),
            "members": members,
            "rejected": batch.rejected,
        }
        archive.writestr(zipfile.ZipInfo("manifest.json", date_time=_zip_time(None)),
                         json.dumps(manifest, indent=2))
    yield sink.take()


def _zip_time(moment) -> tuple:
    moment = moment or timezone.now()
    return tuple(max(moment.timetuple()[:6], (1980, 1, 1, 0, 0, 0)))
