"""``--watch``: after the first pass, process files as they appear in the watched folders.

watchdog delivers the file-system events (inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows; a polling observer elsewhere). A file is taken once no event
has touched it for ``settle`` seconds and its size has stopped changing, so a file still being
copied in is not sent half-written. Files already done are skipped by the manifest as usual; a
file written again with new content is processed again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from quickbg_client import listing


class _Seen(FileSystemEventHandler):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.touched: dict[str, float] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        path = getattr(event, "dest_path", "") or event.src_path
        with self.lock:
            self.touched[os.fsdecode(path)] = time.monotonic()


class Watcher:
    """An observer on every source folder, started at once; ``follow`` yields its files."""

    def __init__(self, sources: list[Path]):
        self.sources = sources
        self.seen = _Seen()
        self.observer = Observer()
        for source in sources:
            if source.is_dir():
                self.observer.schedule(self.seen, str(source), recursive=True)
        self.observer.start()

    def close(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)

    def follow(self, patterns: list[str], output: Path, stop: threading.Event,
               settle: float = 1.0) -> Iterator[listing.Item]:
        seen, out = self.seen, output.resolve()
        sizes: dict[str, int] = {}
        while not stop.is_set():
            time.sleep(min(0.2, settle))
            now = time.monotonic()
            with seen.lock:
                ready = [p for p, t in seen.touched.items() if now - t >= settle]
                for path in ready:
                    del seen.touched[path]
            for name in ready:
                path = Path(name)
                if out in path.resolve().parents or not path.is_file():
                    continue
                rel = listing.rel_for(path, self.sources)
                if rel is None or not listing.matches(rel, patterns):
                    continue
                size = path.stat().st_size
                if sizes.get(name) != size:  # still growing: look again after it settles
                    sizes[name] = size
                    with seen.lock:
                        seen.touched.setdefault(name, now)
                    continue
                sizes.pop(name, None)
                yield listing.Item(path, rel)
