"""Data lifecycle: retention (expire old uploads) and deleting a whole account (in removal,
which owns the uploads, tasks and objects it deletes before the user).

Retention works per upload: an upload created before the cutoff whose tasks are all finished
has its original and the results of every task deleted from storage; the rows stay, marked
(``Upload.expired_at``, tasks ``expired`` with no ``result_key``), so the API still answers and
the download link can say why it is gone (410). An upload with a task still queued or
processing is left for the next run.

Order of work, for "nothing is left behind": rows are marked (or deleted) in a transaction
first and the objects deleted after the commit. A storage failure then leaves an object without
a row (reported, and harmless to users), never a row pointing to a missing object unmarked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from removal import selectors, storage
from removal.errors import InvalidInput
from removal.models import IdempotencyKey, Task, Upload
from removal.services.tasks import task_finished
from removal.services.uploads import stored_keys, uploads_delete

logger = logging.getLogger(__name__)

EXPIRE_CHUNK = 500


@dataclass
class PurgeReport:
    uploads: int = 0
    tasks: int = 0
    bytes: int = 0
    objects: int = 0
    failed_keys: list[str] = field(default_factory=list)


def retention_cutoff(*, days: int | None = None, now: datetime | None = None) -> datetime | None:
    """The moment before which uploads expire; ``None`` when retention is off."""
    days = settings.QUICKBG_RETENTION_DAYS if days is None else days
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def purge_plan(*, cutoff: datetime, user: str | None = None) -> PurgeReport:
    """What ``uploads_expire`` would do now: uploads, their tasks and original bytes."""
    uploads = selectors.expirable_uploads(cutoff=cutoff, user=user)
    totals = uploads.aggregate(n=Count("id"), size=Sum("byte_size"))
    tasks = Task.objects.filter(upload__in=uploads).count()
    return PurgeReport(uploads=totals["n"], tasks=tasks, bytes=totals["size"] or 0)


def uploads_expire(*, cutoff: datetime, user: str | None = None,
                   on_chunk: Callable[[int], None] | None = None) -> PurgeReport:
    """Expire every upload ``selectors.expirable_uploads`` picks, ``EXPIRE_CHUNK`` at a time.

    Walks the selection by ``(created_at, id)`` so memory stays flat and an interrupted run
    resumes where it stopped (expired uploads are no longer selected).
    """
    report = PurgeReport()
    after = None
    while True:
        page = selectors.expirable_uploads(cutoff=cutoff, user=user)
        if after is not None:
            # ``created_at >=`` first: the index condition that starts the chunk at the cursor.
            page = page.filter(Q(created_at__gte=after[0])
                               & (Q(created_at__gt=after[0]) | Q(id__gt=after[1])))
        rows = list(page.order_by("created_at", "id")
                    .values_list("pk", "created_at")[:EXPIRE_CHUNK])
        if not rows:
            return report
        after = rows[-1][1], rows[-1][0]
        _expire_chunk([pk for pk, _ in rows], report)
        if on_chunk:
            on_chunk(len(rows))


def _expire_chunk(ids: list, report: PurgeReport) -> None:
    now = timezone.now()
    keys: list[str] = []
    with transaction.atomic():
        # Lock the uploads, then re-check under the lock that none gained a task in flight.
        locked = list(Upload.objects.select_for_update(skip_locked=True)
                      .filter(pk__in=ids, expired_at=None).values_list("pk", flat=True))
        busy = set(Task.objects.filter(upload_id__in=locked, status__in=selectors.IN_FLIGHT)
                   .values_list("upload_id", flat=True))
        ids = [pk for pk in locked if pk not in busy]
        if not ids:
            return
        uploads = Upload.objects.filter(pk__in=ids)
        tasks = Task.objects.filter(upload_id__in=ids).exclude(status=Task.Status.EXPIRED)
        for result, background in tasks.values_list("result_key", "background_key"):
            keys += [result, background]  # finished tasks only (the upload has none in flight)
            report.tasks += 1
        for original, size in uploads.values_list("original_key", "byte_size"):
            keys.append(original)
            report.bytes += size
        task_finished(tasks=tasks.only("id", "batch_id"))  # an unfinished batch is finished
        tasks.update(status=Task.Status.EXPIRED, result_key="", background_key="", progress=0,
                     updated_at=now)
        report.uploads += uploads.update(expired_at=now)
    keys = [key for key in keys if key]
    failed = storage.delete_many(keys)
    report.objects += len(keys) - len(failed)
    report.failed_keys += failed
    if failed:
        logger.error("retention could not delete %d object(s): %s", len(failed), failed[:20])


def retention_run() -> PurgeReport | None:
    """The daily run (``QUICKBG_RETENTION_DAYS``); ``None`` when retention is off."""
    cutoff = retention_cutoff()
    if cutoff is None:
        return None
    report = uploads_expire(cutoff=cutoff)
    logger.info("retention: expired %d upload(s), %d task(s), deleted %d object(s)",
                report.uploads, report.tasks, report.objects)
    return report


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete the ``Idempotency-Key`` records past their window (they replay nothing any more).
    The workers' reconcile loop calls it on every pass; returns how many were deleted."""
    cutoff = (now or timezone.now()) - IdempotencyKey.WINDOW
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def account_delete(*, user, password: str) -> list[str]:
    """Delete every upload, task and stored object of ``user``, then the user.

    Here, not in ``accounts``: it deletes removal's data before the user row, and ``accounts``
    (the lower app) knows nothing of removal.

    The password is asked again, so a stolen access token alone cannot erase an account.
    Returns the keys storage refused to delete. The order is what leaves nothing behind:

    1. the user is deactivated first, and that is committed: its JWTs and API keys stop working
       at once (both check ``is_active``), and an upload already past authentication is refused
       when it takes the owner's lock (``services.tasks.lock_owner``), deleting what it stored;
    2. the uploads and their objects are deleted, chunk by chunk;
    3. the user row goes last, under its lock, with whatever was committed in the meantime
       (collected under the same lock, deleted after the commit).
    """
    if not password or not user.check_password(password):
        raise InvalidInput("The password is not correct; the account was not deleted")
    User = type(user)  # noqa: N806 - the user model
    # The UPDATE waits for an upload holding the owner's lock to commit first.
    User.objects.filter(pk=user.pk).update(is_active=False)
    failed = uploads_delete(queryset=Upload.objects.filter(owner=user))
    # Objects uploaded directly (presigned POST) but never submitted have no Upload row.
    failed += storage.delete_many(storage.keys_under(storage.incoming_prefix(user.pk)))
    with transaction.atomic():
        list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk"))
        late = list(Upload.objects.select_for_update().filter(owner=user)
                    .values_list("pk", flat=True))
        keys = stored_keys(upload_ids=late)
        User.objects.filter(pk=user.pk).delete()
    failed += storage.delete_many(keys)
    if failed:
        logger.error("account %s: could not delete %d object(s): %s", user.pk, len(failed),
                     failed[:20])
    return failed
