"""Small files in batches, for the folder runner (``runner.FolderRun``'s uploaders).

Files of at most ``batch_max_bytes`` are gathered into groups of ``batch_size`` and sent as one
``POST /api/v1/batches`` each, with one ``Idempotency-Key`` per group (its members' hashes in
order plus the options). The group is recorded in the manifest before it is sent, so a killed
run re-sends exactly that group and the server replays its answer; each member's task id is
then recorded from the answer. A group is sent when it is full, or as soon as no file is
waiting. The figures behind ``BATCH_SIZE`` and ``BATCH_MAX_BYTES``: client/README.md, *Batches*.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from quickbg_client import errors, listing
from quickbg_client.api import batch_idempotency_key, file_sha256, idempotency_key
from quickbg_client.manifest import BatchMember

if TYPE_CHECKING:
    from quickbg_client.runner import _Work

BATCH_KEY_PREFIX = "quickbg-client-batch-"
# Measured with bench/client.py (client/README.md, *Batches*).
BATCH_SIZE = 8
BATCH_MAX_BYTES = 2 * 1024 * 1024


class Batching:
    """The batch half of ``FolderRun`` (its state: ``batch_size``, ``group``, ``group_lock``,
    ``resend_locks``; its ``_upload_one``, ``_track``, ``_fail`` and ``slots``)."""

    # --- batches of small files -----------------------------------------------------------

    def _batchable(self, item: listing.Item) -> bool:
        if self.batch_size < 2:
            return False
        try:
            small = item.path.stat().st_size <= self.batch_max_bytes
        except OSError:
            return False
        return small and _plain_name(item.path.name)

    def _add_to_group(self, work: _Work) -> None:
        name = work.item.path.name
        with self.group_lock:
            full = None
            if any(member.item.path.name == name for member in self.group):
                # Members are told apart by name in the answer: a second one starts a group.
                full, self.group = self.group, [work]
            else:
                self.group.append(work)
                if len(self.group) >= self.batch_size:
                    full, self.group = self.group, []
        if full:
            self._send(full)

    def _send_group(self) -> None:
        with self.group_lock:
            group, self.group = self.group, []
        if group:
            self._send(group)

    def _send(self, group: list[_Work]) -> None:
        if len(group) == 1:
            self._upload_one(group[0])
            return
        key = batch_idempotency_key([w.entry.sha256 for w in group], self.options, self.nonce)
        members = [BatchMember(str(w.item.path), w.item.rel, w.entry.sha256, w.item.path.name)
                   for w in group]
        for work in group:
            work.entry = replace(work.entry, idem_key=key, status="uploading", task_id=None,
                                 error=None)
        self.manifest.put_batch(key, members, [w.entry for w in group])  # before it is sent
        self._post(key, members, {w.item.rel: w for w in group})

    def _resume_group(self, work: _Work) -> None:
        """A file whose batch was being sent when an earlier run died: send that same batch
        again (the server replays its answer), once for all its members."""
        key = work.entry.idem_key
        with self.group_lock:
            lock = self.resend_locks.setdefault(key, threading.Lock())
        with lock:
            entry = self.manifest.get(work.item.rel)
            if entry is not None and entry.idem_key == key and entry.status == "uploaded":
                work.entry = entry  # another member of its batch re-sent it just now
                self._track(work, entry.task_id)
                return
            if entry is not None and entry.idem_key == key and entry.status == "failed":
                self._fail(work, entry.error or "refused", slot=True)
                return
            members = self.manifest.get_batch(key)
            if members is None or not all(_same_file(m) for m in members):
                # A member changed or vanished: that batch cannot be sent again as it was.
                self._upload_one(work)
                return
            self._post(key, members, {work.item.rel: work})

    def _post(self, key: str, members: list[BatchMember], works: dict[str, _Work]) -> None:
        """Send one batch; record every member's task id (or refusal) in the manifest, and
        track those of this run (``works``: by entry)."""
        try:
            accepted = self.client.batch([(m.path, m.name) for m in members],
                                         idempotency_key=key, **self.options)
        except (errors.AuthError, errors.CreditsExhausted):
            for _ in works:
                self.slots.release()
            raise
        except errors.APIError as exc:
            if exc.option_error:
                for _ in works:
                    self.slots.release()
                raise
            # The whole batch refused (no acceptable member, over the batch's limits, ...):
            # nothing was made, so each member goes on its own, with its own key.
            for member in members:
                if member.input not in works:
                    self._member_entry(key, member.input, idem_key=idempotency_key(
                        member.sha256, self.options, self.nonce))
            for work in works.values():
                self._upload_one(work)
            return
        except Exception as exc:  # the server stayed unreachable through every retry
            for work in works.values():
                self._fail(work, f"{type(exc).__name__}: {exc}", slot=True)
            return
        refused = {r.get("name"): r.get("detail") or "refused" for r in accepted.rejected}
        task_ids = iter(accepted.task_ids)
        for member in members:
            work = works.get(member.input)
            if member.name in refused:
                if work is not None:
                    self._fail(work, refused[member.name], slot=True)
                else:
                    self._member_entry(key, member.input, status="failed",
                                       error=refused[member.name])
                continue
            task_id = next(task_ids, None)
            if task_id is None:  # an answer that does not add up: a server bug
                raise errors.QuickBGError(f"batch {accepted.batch_id}: fewer task ids than "
                                          "members")
            if work is not None:
                work.uploaded = True
                work.entry = replace(work.entry, task_id=task_id, status="uploaded", error=None)
                self.manifest.put(work.entry)
                self._track(work, task_id)
            else:
                self._member_entry(key, member.input, status="uploaded", task_id=task_id)

    def _member_entry(self, key: str, rel: str, **changes) -> None:
        """Update a batch member this run does not hold (yet), if it still waits on the batch."""
        entry = self.manifest.get(rel)
        if entry is not None and entry.idem_key == key and entry.status == "uploading":
            self.manifest.put(replace(entry, **changes))


def _plain_name(name: str) -> bool:
    """A name the server keeps as it is for a batch member (so its answer names it back)."""
    return (0 < len(name) <= 255 and name == name.strip() and name.isprintable()
            and "/" not in name and "\\" not in name and set(name) != {"."}
            and not (len(name) >= 2 and name[1] == ":"))


def _same_file(member: BatchMember) -> bool:
    try:
        return file_sha256(member.path) == member.sha256
    except OSError:
        return False
