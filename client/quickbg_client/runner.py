"""The folder runner behind ``quickbg remove DIR`` and ``Client.remove_folder``.

Threads, each with one job, joined by bounded queues so memory stays flat whatever the folder:

- the **lister** walks the sources lazily (``listing.items``; with ``--watch`` it then follows
  file-system events) into a queue of at most ``2 x jobs`` items;
- ``jobs`` **uploaders** hash a file, consult the manifest (skip, resume or upload) and send
  it with its ``Idempotency-Key``; at most ``max_pending`` tasks are in flight (uploaded, not
  yet downloaded), below the server's unfinished-task cap, so uploads run ahead of the workers
  (they never wait idle for the client) without piling up a backlog. With ``batch_size`` > 1,
  files of at most ``batch_max_bytes`` are gathered into groups of ``batch_size`` and sent as
  one ``POST /api/v1/batches`` each, with one key per group (its members' hashes in order plus
  the options); the group is recorded in the manifest before it is sent, so a killed run
  re-sends exactly that group and the server replays its answer. A group is sent when it is
  full, or as soon as no file is waiting; larger files go one by one (``batching.py``);
- one **poller** reads the newest page of ``GET /api/v1/tasks`` (one request for up to 100
  tasks) every ``poll_interval``, and asks for older pending tasks one by one;
- ``jobs`` **downloaders** fetch finished results and write them (to a temporary name, then
  renamed, so a killed run never leaves half a file under the final name).

Every state change is written to the manifest first (``manifest.py``), which is what makes a
killed run resumable without a second upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from quickbg_client import errors, listing
from quickbg_client.api import Client, file_sha256, idempotency_key
from quickbg_client.batching import BATCH_KEY_PREFIX, BATCH_MAX_BYTES, BATCH_SIZE, Batching
from quickbg_client.manifest import Entry, Manifest
from quickbg_client.options import form_fields
from quickbg_client.results import FileResult

_DONE = object()
__all__ = ["BATCH_MAX_BYTES", "BATCH_SIZE", "FolderRun"]


@dataclass
class _Work:
    item: listing.Item
    entry: Entry
    started: float
    uploaded: bool = False


class FolderRun(Batching):
    def __init__(self, client: Client, sources: list[Path], output: Path, *, jobs: int = 4,
                 patterns: list[str] | None = None, force: bool = False, watch: bool = False,
                 max_pending: int = 16, options: dict | None = None,
                 settle_seconds: float = 1.0, on_watching=None, batch_size: int = 1,
                 batch_max_bytes: int = 0):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        for source in sources:
            if not source.exists():
                raise FileNotFoundError(f"{source}: no such file or folder")
        self.client = client
        self.sources = sources
        self.output = output
        self.jobs = jobs
        self.patterns = list(patterns or [])
        self.force = force
        self.watch = watch
        self.options = dict(options or {})
        self.options_key = json.dumps(form_fields(self.options), sort_keys=True)
        self.settle_seconds = settle_seconds
        self.on_watching = on_watching  # called once the first pass is listed, as watching starts
        self.nonce = f"force-{time.time_ns()}" if force else ""
        self.work: queue.Queue = queue.Queue(maxsize=2 * jobs)
        self.downloads: queue.Queue = queue.Queue()
        self.results_q: queue.Queue = queue.Queue()
        self.slots = threading.BoundedSemaphore(max(1, max_pending))
        self.pending: dict[str, _Work] = {}
        self.pending_lock = threading.Lock()
        self.stop = threading.Event()
        self.listed = threading.Event()
        self.in_progress = 0
        self.active: set[str] = set()  # inputs being processed (a watch may see one twice)
        self.count_lock = threading.Lock()
        self.fatal: BaseException | None = None
        self.manifest: Manifest | None = None
        # A group holds one pending slot per member, so it is never larger than max_pending.
        self.batch_size = max(1, min(batch_size, max_pending))
        self.batch_max_bytes = batch_max_bytes
        self.group: list[_Work] = []
        self.group_lock = threading.Lock()
        self.resend_locks: dict[str, threading.Lock] = {}

    # --- the generator the caller iterates ------------------------------------------------

    def results(self) -> Iterator[FileResult]:
        self.manifest = Manifest(self.output)
        threads = [threading.Thread(target=self._guard(self._list), name="quickbg-lister")]
        threads += [threading.Thread(target=self._guard(self._upload_loop), name=f"up-{i}")
                    for i in range(self.jobs)]
        threads += [threading.Thread(target=self._guard(self._download_loop), name=f"dl-{i}")
                    for i in range(self.jobs)]
        threads.append(threading.Thread(target=self._guard(self._poll_loop), name="poller"))
        for thread in threads:
            thread.daemon = True
            thread.start()
        try:
            while True:
                if self.fatal is not None:
                    raise self.fatal
                with self.count_lock:
                    finished = self.listed.is_set() and self.in_progress == 0
                if finished and self.results_q.empty():
                    return
                try:
                    result = self.results_q.get(timeout=0.2)
                except queue.Empty:
                    continue
                yield result
        finally:
            self.stop.set()
            deadline = time.monotonic() + 5  # a thread inside a request is left (daemon)
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            self.manifest.close()

    def _guard(self, target):
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # an error that ends the run (auth, credits, a bug)
                if self.fatal is None:
                    self.fatal = exc
                self.stop.set()
        return run

    # --- stages ---------------------------------------------------------------------------

    def _put(self, q: queue.Queue, value) -> bool:
        while not self.stop.is_set():
            try:
                q.put(value, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                if q is self.work:
                    self._send_group()  # nothing is waiting: send the group gathered so far
                    if self.listed.is_set():
                        return _DONE
        return _DONE

    def _list(self) -> None:
        watcher = None
        try:
            if self.watch:  # watching from before the walk: no file falls between the two
                from quickbg_client.watch import Watcher

                watcher = Watcher(self.sources)
            for item in listing.items(self.sources, self.patterns, self.output):
                if not self._enqueue(item):
                    return
            if watcher is not None:
                if self.on_watching is not None:
                    self.on_watching()
                for item in watcher.follow(self.patterns, self.output, self.stop,
                                           self.settle_seconds):
                    if not self._enqueue(item):
                        return
        finally:
            if watcher is not None:
                watcher.close()
            self.listed.set()

    def _enqueue(self, item: listing.Item) -> bool:
        with self.count_lock:
            self.in_progress += 1
        if self._put(self.work, item):
            return True
        with self.count_lock:
            self.in_progress -= 1
        return False

    def _finish(self, rel: str, result: FileResult, slot: bool = False) -> None:
        if slot:
            self.slots.release()
        self.results_q.put(result)
        with self.count_lock:
            self.in_progress -= 1
            self.active.discard(rel)

    def _fail(self, work: _Work, error: str, task_id: str | None = None,
              slot: bool = False) -> None:
        self.manifest.put(replace(work.entry, status="failed", error=error,
                                  task_id=task_id or work.entry.task_id))
        self._finish(work.item.rel, FileResult(str(work.item.path), None, "failed",
                                      task_id or work.entry.task_id, error, work.uploaded,
                                      time.monotonic() - work.started), slot)

    def _upload_loop(self) -> None:
        while True:
            item = self._get(self.work)
            if item is _DONE:
                if not self.stop.is_set():  # the listing is over: the last group goes now
                    self._send_group()
                return
            self._take(item)

    def _take(self, item: listing.Item) -> None:
        started = time.monotonic()
        with self.count_lock:
            if item.rel in self.active:  # already on its way (the walk and a watch event)
                self.in_progress -= 1
                return
            self.active.add(item.rel)
        try:
            sha = file_sha256(item.path)
        except OSError as exc:  # vanished or unreadable: no manifest row to record it in
            self._finish(item.rel, FileResult(str(item.path), None, "failed", error=str(exc)))
            return
        entry = self.manifest.get(item.rel)
        same = (entry is not None and entry.sha256 == sha
                and entry.options == self.options_key and not self.force)
        if same and entry.status == "done" and entry.output and \
                (self.output / entry.output).is_file():
            self._finish(item.rel, FileResult(str(item.path), str(self.output / entry.output),
                                          "skipped", entry.task_id,
                                          seconds=time.monotonic() - started))
            return
        fresh = not same or (entry.status == "failed" and not entry.task_id)
        if fresh:
            # New, changed, or refused by the server last time (a refusal frees no key of a
            # batch that was accepted for its other members): a key of its own.
            entry = Entry(item.rel, sha, self.options_key,
                          idempotency_key(sha, self.options, self.nonce), None, "uploading",
                          None, None)
            self.manifest.put(entry)
        work = _Work(item, entry, started)
        if not self._acquire_slot():
            return
        if entry.task_id and entry.status in ("uploaded", "done", "failed"):
            if entry.status == "failed":
                # The task failed on the server: put that same task back (no second task).
                with contextlib.suppress(errors.APIError):
                    self.client.retry_task(entry.task_id)
            self._track(work, entry.task_id)
            return
        if entry.idem_key.startswith(BATCH_KEY_PREFIX):  # killed while its batch was sent
            self._resume_group(work)
        elif fresh and self._batchable(item):
            # Only a file never sent: one cut short alone goes again alone, with its key.
            self._add_to_group(work)
        else:
            self._upload_one(work)

    def _upload_one(self, work: _Work) -> None:
        item = work.item
        if work.entry.idem_key.startswith(BATCH_KEY_PREFIX):  # out of a refused batch
            work.entry = replace(work.entry, idem_key=idempotency_key(
                work.entry.sha256, self.options, self.nonce), status="uploading")
            self.manifest.put(work.entry)
        entry = work.entry
        try:
            accepted = self.client.upload(item.path, filename=item.path.name,
                                          idempotency_key=entry.idem_key, **self.options)
        except (errors.AuthError, errors.CreditsExhausted):
            self.slots.release()
            raise
        except errors.APIError as exc:
            if exc.option_error:
                self.slots.release()
                raise
            self._fail(work, exc.detail, slot=True)
            return
        except Exception as exc:  # the server stayed unreachable through every retry
            self._fail(work, f"{type(exc).__name__}: {exc}", slot=True)
            return
        work.uploaded = True
        work.entry = replace(entry, task_id=accepted.task_id, status="uploaded", error=None)
        self.manifest.put(work.entry)
        self._track(work, accepted.task_id)

    def _acquire_slot(self) -> bool:
        while not self.stop.is_set():
            if self.slots.acquire(timeout=0.2):
                return True
            self._send_group()  # its members hold slots: sending it frees them in time
        return False

    def _track(self, work: _Work, task_id: str) -> None:
        work.entry = replace(work.entry, task_id=task_id, status="uploaded")
        with self.pending_lock:
            self.pending[task_id] = work

    def _poll_loop(self) -> None:
        older_cursor = 0
        while not self.stop.is_set():
            with self.pending_lock:
                waiting = list(self.pending)
            if not waiting:
                with self.count_lock:
                    if self.listed.is_set() and self.in_progress == 0:
                        return
                time.sleep(0.05)
                continue
            try:
                seen = {t["task_id"]: t for t in self.client.recent_tasks(100)}
                missing = [task_id for task_id in waiting if task_id not in seen]
                # Older tasks than the newest page: a few per round, in turn.
                for task_id in missing[older_cursor % max(1, len(missing)):][:5]:
                    seen[task_id] = self.client.task(task_id)
                older_cursor += 5
            except errors.APIError as exc:
                if isinstance(exc, errors.AuthError):
                    raise
                time.sleep(self.client.poll_interval)
                continue
            except Exception:
                time.sleep(self.client.poll_interval)
                continue
            for task_id in waiting:
                task = seen.get(task_id)
                if task is None or task["status"] in ("queued", "processing"):
                    continue
                with self.pending_lock:
                    work = self.pending.pop(task_id, None)
                if work is None:
                    continue
                if task["status"] == "completed":
                    self.downloads.put((work, task))
                else:
                    self._fail(work, task.get("error_message") or f"task {task['status']}",
                               task_id, slot=True)
            time.sleep(self.client.poll_interval)

    def _download_loop(self) -> None:
        while True:
            value = self._get(self.downloads)
            if value is _DONE:  # the run is over (or stopped)
                return
            work, task = value
            try:
                data, extension = self.client.download(task)
                rel = listing.output_rel(work.item, extension)
                self._write(self.output / rel, data)
            except errors.AuthError:
                raise
            except Exception as exc:
                self._fail(work, f"download failed: {exc}", task["task_id"], slot=True)
                continue
            self.manifest.put(replace(work.entry, status="done", output=rel, error=None))
            result = FileResult(str(work.item.path), str(self.output / rel), "done",
                                task["task_id"], None, work.uploaded,
                                time.monotonic() - work.started)
            self._finish(work.item.rel, result, slot=True)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".quickbg-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
