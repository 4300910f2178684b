"""``manage.py reprocess``: queue new tasks for existing uploads, in bulk, through services.

Selects tasks (``--status``, ``--since``/``--until``, ``--user``, ``--model``, ``--ids``), oldest
first (``selectors.tasks_matching``), and for each one queues a new task on the same upload with
the current default model (``services.tasks.task_reprocess``); the selected tasks themselves are
left as they are. The skip rules are ``selectors.reprocess_plan``'s, shared with the admin
action: tasks still queued or processing, uploads that already have a task queued or processing
(running the same command twice queues nothing new), and a second selected task of an upload
already handled in this run; tasks whose images retention deleted; and tasks already
reprocessed with the current model (``Task.reprocess_of``), so an interrupted run resumes where it
stopped. The rules run in PostgreSQL, set-based, and the tasks are walked in chunks of 1000 (flat
memory). ``--dry-run`` lists what would be queued and changes nothing; over ``LIST_LIMIT``
selected tasks the per-task lines need ``-v 2`` and a dry run is one counting query.
``--wait`` polls the database until the new tasks finish (or ``--timeout``) and reports how they
ended.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from datetime import time as dtime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from removal import modelstore, selectors
from removal.errors import QuickBGError
from removal.models import Task
from removal.services.tasks import task_reprocess

Status = Task.Status
SKIP_LABELS = {
    selectors.SKIP_IN_FLIGHT: ("skipped (in flight)", "skipped, still {status}"),
    selectors.SKIP_SAME_UPLOAD: ("skipped (same upload)",
                                 "skipped, upload already queued in this run"),
    selectors.SKIP_UPLOAD_BUSY: ("skipped (upload busy)",
                                 "skipped, its upload already has a task queued or processing"),
    selectors.SKIP_EXPIRED: ("skipped (expired)", "skipped, its images were deleted (retention)"),
    selectors.SKIP_DONE: ("skipped (already reprocessed)",
                          "skipped, already reprocessed with the current model"),
}
# Above this many selected tasks, the per-task lines need ``-v 2``; a dry run then counts in
# the database alone (``selectors.reprocess_counts``) instead of walking the tasks.
LIST_LIMIT = 1000


def moment(value: str) -> datetime:
    """ISO date (``2026-01-31``, midnight UTC) or datetime (``2026-01-31T12:00[+02:00]``)."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(value)
        parsed = datetime.combine(day, dtime.min)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


moment.__name__ = "date or datetime"  # argparse names the type in its error message


class Command(BaseCommand):
    help = (
        "Queue new tasks (current model) for the uploads of the selected tasks. Select with "
        "--status/--since/--until/--user/--model/--ids (or --all); --dry-run changes nothing; "
        "--wait reports how the new tasks ended."
    )

    def add_arguments(self, parser):
        parser.add_argument("--status", action="append", choices=Status.values,
                            help="Select tasks with this status (repeatable).")
        parser.add_argument("--since", type=moment,
                            help="Select tasks created at or after this date/datetime (UTC).")
        parser.add_argument("--until", type=moment,
                            help="Select tasks created before this date/datetime (UTC).")
        parser.add_argument("--user", help="Select the tasks of this user (id, username, email).")
        parser.add_argument("--batch", type=uuid.UUID, metavar="BATCH_ID",
                            help="Select the members of this batch.")
        parser.add_argument("--model", choices=sorted(modelstore.MODELS),
                            help="Select tasks that ran (or were to run) with this model.")
        parser.add_argument("--to-model", choices=sorted(modelstore.MODELS), default=None,
                            help="Run the new tasks on this model (default: QUICKBG_MODEL); "
                                 "a live worker must serve it.")
        parser.add_argument("--ids", nargs="+", default=[], metavar="TASK_ID",
                            help="Select these task ids (space- or comma-separated).")
        parser.add_argument("--all", action="store_true",
                            help="Select every task (needed when no other selector is given).")
        parser.add_argument("--limit", type=int, help="Queue at most this many new tasks.")
        parser.add_argument("--dry-run", action="store_true",
                            help="List what would be queued; change nothing.")
        parser.add_argument("--wait", action="store_true",
                            help="Wait for the new tasks to finish and report how they ended.")
        parser.add_argument("--timeout", type=float, default=600.0,
                            help="Seconds --wait waits before giving up (default 600).")
        parser.add_argument("--poll-interval", type=float, default=2.0,
                            help="Seconds between --wait's database polls (default 2).")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    # --- selection -------------------------------------------------------------------------------

    def handle(self, *args, **options):
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        ids, bad_ids = self.parse_ids(options["ids"])
        selectors = ("status", "since", "until", "user", "model", "batch")
        if not (options["all"] or ids or bad_ids or any(options[s] for s in selectors)):
            raise CommandError(
                "Select something: --status, --since, --until, --user, --model, --batch, --ids, "
                "or --all."
            )
        for value in bad_ids:
            self.stdout.write(self.style.ERROR(f"{value}: not a task id (skipped)"))
        if bad_ids and not ids:
            raise CommandError("None of the given --ids is a valid task id.")

        queryset = self.select(options, ids)
        missing = []
        if ids:
            found = {str(pk) for pk in queryset.values_list("pk", flat=True)}
            missing = sorted({str(i) for i in ids} - found)
            for value in missing:
                self.stdout.write(self.style.ERROR(f"{value}: no such task (skipped)"))
        created, counts = self.run(queryset, options)
        counts["invalid id"] += len(bad_ids)
        counts["not found"] += len(missing)
        self.summary(counts, dry_run=options["dry_run"])
        if options["wait"] and created and not options["dry_run"]:
            self.wait(created, timeout=options["timeout"], interval=options["poll_interval"],
                      progress=not options["no_progress"])

    def parse_ids(self, raw: list[str]) -> tuple[list[uuid.UUID], list[str]]:
        ids, bad = [], []
        for chunk in raw:
            for value in filter(None, (v.strip() for v in chunk.split(","))):
                try:
                    ids.append(uuid.UUID(value))
                except ValueError:
                    bad.append(value)
        return ids, bad

    def select(self, options, ids):
        return selectors.tasks_matching(
            statuses=options["status"], since=options["since"], until=options["until"],
            user=options["user"], model=options["model"], ids=ids, batch=options["batch"],
        )

    # --- queueing --------------------------------------------------------------------------------

    def run(self, queryset, options) -> tuple[list, Counter]:
        dry_run, limit = options["dry_run"], options["limit"]
        total = queryset.count()
        counts: Counter = Counter()
        created: list = []
        verb = "would queue" if dry_run else "queued"
        self.listing = total <= LIST_LIMIT or options["verbosity"] >= 2
        if dry_run and limit is None and not self.listing:
            for skip, n in selectors.reprocess_counts(queryset,
                                                      model=options["to_model"]).items():
                counts[verb if skip is None else SKIP_LABELS[skip][0]] += n
            return created, counts
        bar = tqdm(total=total, unit="task", desc="reprocess", file=self.stderr._out,
                   disable=options["no_progress"] or total == 0, leave=False)
        with bar:
            for task, skip in selectors.reprocess_plan(queryset, model=options["to_model"]):
                bar.update(1)
                if limit is not None and counts[verb] >= limit:
                    counts["over --limit"] += 1
                    continue
                label = f"{task.pk} (upload {task.upload_id}, {task.upload.owner}, {task.status})"
                if skip is not None:
                    count, reason = SKIP_LABELS[skip]
                    self.line(bar, f"{label}: {reason.format(status=task.status)}")
                    counts[count] += 1
                    continue
                if dry_run:
                    self.line(bar, f"{label}: would queue a new task")
                    counts[verb] += 1
                    continue
                try:
                    new_task = task_reprocess(task=task, model=options["to_model"])
                except QuickBGError as exc:
                    self.line(bar, self.style.WARNING(f"{label}: skipped, {exc.detail}"))
                    counts["skipped (in flight)"] += 1
                    continue
                except Exception as exc:  # noqa: BLE001 - one bad item must not stop the rest
                    self.line(bar, self.style.ERROR(f"{label}: error: {exc}"), always=True)
                    counts["errors"] += 1
                    continue
                created.append(new_task.pk)
                counts[verb] += 1
                self.line(bar, f"{label}: queued new task {new_task.pk}")
        return created, counts

    def line(self, bar, message: str, *, always: bool = False) -> None:
        if self.listing or always:
            bar.write(message, file=self.stdout._out)

    def summary(self, counts: Counter, *, dry_run: bool) -> None:
        verb = "would queue" if dry_run else "queued"
        parts = [f"{counts.get(verb, 0)} {verb}"]
        parts += [f"{n} {what}" for what, n in sorted(counts.items()) if what != verb and n]
        prefix = "Dry run, nothing changed: " if dry_run else "Done: "
        self.stdout.write(self.style.SUCCESS(prefix + ", ".join(parts) + "."))
        if counts.get("errors"):
            self.stdout.write(self.style.ERROR(f"{counts['errors']} task(s) could not be queued."))

    # --- --wait ---------------------------------------------------------------------------------

    def wait(self, task_ids: list, *, timeout: float, interval: float, progress: bool) -> None:
        deadline = time.monotonic() + timeout
        bar = tqdm(total=len(task_ids), unit="task", desc="waiting", file=self.stderr._out,
                   disable=not progress, leave=False)
        with bar:
            while True:
                by_status = Counter(
                    Task.objects.filter(pk__in=task_ids).values_list("status", flat=True)
                )
                finished = by_status[Status.COMPLETED] + by_status[Status.FAILED]
                bar.update(finished - bar.n)
                if finished == len(task_ids) or time.monotonic() >= deadline:
                    break
                time.sleep(interval)
        pending = len(task_ids) - finished
        self.stdout.write(
            f"New tasks: {by_status[Status.COMPLETED]} completed, {by_status[Status.FAILED]} "
            f"failed, {pending} still queued or processing."
        )
        failures = Counter(
            Task.objects.filter(pk__in=task_ids, status=Status.FAILED)
            .values_list("error_message", flat=True)
        )
        for message, n in failures.most_common(5):
            self.stdout.write(f"  {n} × {message[:200]}")
        if pending:
            raise CommandError(f"{pending} new task(s) had not finished after {timeout:g} s "
                               f"(queue {settings.QUICKBG_QUEUE}; is a worker running?)")
        if by_status[Status.FAILED]:
            raise CommandError(f"{by_status[Status.FAILED]} new task(s) failed.")
