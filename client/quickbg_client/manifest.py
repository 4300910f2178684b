"""The resume manifest: ``OUT/.quickbg-manifest.sqlite3``, one row per input.

A row is keyed by the input's path relative to the output tree and holds the input's sha256,
the options it was sent with, its ``Idempotency-Key``, its task id, its state and its output:

- ``uploading``: the key is recorded *before* the upload is sent, so a run killed during the
  request sends the same key again and the server replays its answer (or says it is still in
  progress) instead of making a second task. A small file sent in a batch has its batch's key
  (``quickbg-client-batch-...``), and the ``batches`` table records that batch's members in the
  order sent (path, place, sha256), so a later run re-sends exactly that batch;
- ``uploaded``: the server accepted it (task id known): a later run polls that task, never
  uploads again;
- ``done``: the result is written at ``output``;
- ``failed``: ``error`` is the server's message (the task id too, if the task itself failed).

SQLite (the standard library's) rather than a JSON file: a lookup per input without loading a
million rows into memory, and every change is a committed transaction (WAL), so a SIGKILL at any
instant leaves the last committed state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

NAME = ".quickbg-manifest.sqlite3"


@dataclass(frozen=True)
class Entry:
    input: str
    sha256: str
    options: str
    idem_key: str
    task_id: str | None
    status: str
    output: str | None
    error: str | None


@dataclass(frozen=True)
class BatchMember:
    path: str  # the input file, as the run found it
    input: str  # its entry's key (place in the output tree)
    sha256: str
    name: str  # the name it was sent under


class Manifest:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (input TEXT PRIMARY KEY, sha256 TEXT NOT NULL,"
            " options TEXT NOT NULL, idem_key TEXT NOT NULL, task_id TEXT, status TEXT NOT NULL,"
            " output TEXT, error TEXT, updated_at REAL NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (idem_key TEXT PRIMARY KEY, members TEXT NOT NULL)")

    def get(self, input: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT input, sha256, options, idem_key, task_id, status, output, error"
                " FROM files WHERE input = ?", (input,)).fetchone()
        return Entry(*row) if row else None

    def put(self, entry: Entry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.input, entry.sha256, entry.options, entry.idem_key, entry.task_id,
                 entry.status, entry.output, entry.error, time.time()))

    def put_batch(self, idem_key: str, members: list[BatchMember], entries: list[Entry]) -> None:
        """Record a batch (its members in order) and its members' entries in one transaction,
        before the batch is sent."""
        rows = json.dumps([[m.path, m.input, m.sha256, m.name] for m in members])
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?)", (idem_key, rows))
                for entry in entries:
                    self._db.execute(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry.input, entry.sha256, entry.options, entry.idem_key,
                         entry.task_id, entry.status, entry.output, entry.error, time.time()))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get_batch(self, idem_key: str) -> list[BatchMember] | None:
        with self._lock:
            row = self._db.execute("SELECT members FROM batches WHERE idem_key = ?",
                                   (idem_key,)).fetchone()
        return [BatchMember(*member) for member in json.loads(row[0])] if row else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, count(*) FROM files GROUP BY status"))

    def close(self) -> None:
        with self._lock:
            self._db.close()
