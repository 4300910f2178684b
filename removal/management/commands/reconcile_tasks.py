from __future__ import annotations

from django.core.management.base import BaseCommand

from removal.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Re-enqueue tasks the database says are queued or processing but that no live RQ job "
        "holds (Redis lost its data, a worker died). Workers also run this periodically."
    )

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=int, default=30,
                            help="Ignore tasks updated in the last N seconds (default 30).")
        parser.add_argument("--dry-run", action="store_true", help="List, change nothing.")

    def handle(self, *args, **options):
        report = reconcile(grace_seconds=options["grace"], dry_run=options["dry_run"])
        verb = "would requeue" if options["dry_run"] else "requeued"
        for task_id in report.requeued:
            self.stdout.write(f"{verb} {task_id}")
        for task_id in report.failed:
            self.stdout.write(f"failed {task_id} (too many attempts)")
        for delivery_id in report.deliveries_requeued:
            self.stdout.write(f"{verb} webhook delivery {delivery_id}")
        self.stdout.write(
            f"checked {report.checked}, held by live jobs {report.held}, "
            f"{verb} {len(report.requeued)}, failed {len(report.failed)}"
        )
