from __future__ import annotations

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelstore
from removal.queue import worker_queue_names
from removal.runner import get_segmenter, model_file


class Command(BaseCommand):
    help = "Run a QuickBG worker: checks the model, loads it once, then processes the queue."

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--max-jobs", type=int, default=None,
                            help="Exit after this many jobs (recycle the process).")
        parser.add_argument("--name", default=None, help="Worker name (default: RQ's).")
        parser.add_argument("--no-warmup", action="store_true",
                            help="Load the model on the first job instead of at start.")

    def handle(self, *args, **options):
        try:
            modelstore.verify(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        if not options["no_warmup"]:
            get_segmenter()
            self.stdout.write(f"Model loaded from {model_file()}")
        # RQ["WORKER_CLASS"] (removal.worker.QuickBGWorker) and RQ["QUEUE_CLASS"] apply.
        # The queues in priority order: batch jobs start only when the interactive queue is empty.
        queue = django_rq.get_queue(settings.QUICKBG_QUEUE)
        worker = django_rq.get_worker(
            *worker_queue_names(), serializer=queue.serializer, name=options["name"],
        )
        worker.work(
            burst=options["burst"], with_scheduler=True, max_jobs=options["max_jobs"],
            logging_level=settings.LOG_LEVEL,
        )
