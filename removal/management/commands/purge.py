"""``manage.py purge``: retention on demand (``services.retention``), with a progress bar.

Uploads older than ``--older-than`` (default ``QUICKBG_RETENTION_DAYS``) whose tasks are all
finished lose their stored original and every result; the rows are kept and marked expired.
``--user`` limits it to one user (id, username or email); ``--dry-run`` counts what would go
and changes nothing. Workers run the same thing daily when ``QUICKBG_RETENTION_DAYS`` is set.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from removal.services import retention

UNITS = {"d": "days", "h": "hours", "w": "weeks", "m": "minutes"}


def age(value: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` or a bare number of days."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhwm]?)\s*", value)
    if not match:
        raise ValueError(value)
    return timedelta(**{UNITS[match[2] or "d"]: int(match[1])})


age.__name__ = "age like 30d, 12h or 2w"


class Command(BaseCommand):
    help = ("Delete the stored originals and results of uploads older than --older-than (default "
            "QUICKBG_RETENTION_DAYS); the rows stay, marked expired. --dry-run changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=age,
                            help="Age like 30d, 12h or 2w (default: QUICKBG_RETENTION_DAYS).")
        parser.add_argument("--user", help="Only this user's uploads (id, username, email).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count what would be deleted; change nothing.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, **options):
        older = options["older_than"]
        if older is None:
            if not settings.QUICKBG_RETENTION_DAYS:
                raise CommandError("Give --older-than (QUICKBG_RETENTION_DAYS is not set).")
            older = timedelta(days=settings.QUICKBG_RETENTION_DAYS)
        cutoff = timezone.now() - older
        plan = retention.purge_plan(cutoff=cutoff, user=options["user"])
        scope = f" of {options['user']}" if options["user"] else ""
        what = (f"{plan.uploads} upload(s){scope} created before {cutoff:%Y-%m-%d %H:%M} UTC, "
                f"{plan.tasks} task(s), {plan.bytes / 1e6:.1f} MB of originals")
        if options["dry_run"]:
            self.stdout.write(self.style.SUCCESS(f"Dry run, nothing changed: would expire {what}."))
            return
        bar = tqdm(total=plan.uploads, unit="upload", desc="purge", file=self.stderr._out,
                   disable=options["no_progress"] or plan.uploads == 0, leave=False)
        with bar:
            report = retention.uploads_expire(cutoff=cutoff, user=options["user"],
                                              on_chunk=bar.update)
        self.stdout.write(self.style.SUCCESS(
            f"Done: expired {report.uploads} upload(s), {report.tasks} task(s); deleted "
            f"{report.objects} stored object(s) ({report.bytes / 1e6:.1f} MB of originals)."
        ))
        for key in report.failed_keys[:20]:
            self.stdout.write(self.style.ERROR(f"{key}: could not be deleted from storage"))
        if report.failed_keys:
            raise CommandError(f"{len(report.failed_keys)} object(s) could not be deleted.")
