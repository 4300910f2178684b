from __future__ import annotations

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelstore
from removal import queue as queue_module
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
        parser.add_argument("--webhooks-only", action="store_true",
                            help="Only deliver webhooks (no model is loaded).")

    def handle(self, *args, **options):
        # Queues in priority order: RQ takes a job from the first non-empty one, so batch jobs
        # start only when the interactive queue (and the webhooks') is empty.
        queues = queue_module.worker_queue_names()
        if options["webhooks_only"]:
            queues = [queue_module.webhooks_queue_name()]
            options["no_warmup"] = True
        else:
            self._check_model(options)
        self._work(queues, options)

    def _check_model(self, options):
        try:
            modelstore.verify(settings.QUICKBG_MODELS_DIR, settings.QUICKBG_MODEL)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        if not options["no_warmup"]:
            get_segmenter()
            self.stdout.write(f"Model loaded from {model_file()}")

    def _work(self, queues, options):
        # RQ["WORKER_CLASS"] (removal.worker.QuickBGWorker) and RQ["QUEUE_CLASS"] apply.
        queue = django_rq.get_queue(queues[0])
        worker = django_rq.get_worker(
            *queues, serializer=queue.serializer, name=options["name"],
        )
        worker.work(
            burst=options["burst"], with_scheduler=True, max_jobs=options["max_jobs"],
            logging_level=settings.LOG_LEVEL,
        )
