from __future__ import annotations

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelstore
from removal import queue as queue_module
from removal.runner import get_segmenter, model_file


class Command(BaseCommand):
    help = (
        "Run a QuickBG worker for some models (--models a,b; default: every installed model): "
        "checks their files, listens to those models' queues (interactive first, then "
        "webhooks, then batch), loads a model on its first job (the first one at start unless "
        "--no-warmup) and keeps at most QUICKBG_MAX_LOADED_MODELS loaded."
    )

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--max-jobs", type=int, default=None,
                            help="Exit after this many jobs (recycle the process).")
        parser.add_argument("--name", default=None, help="Worker name (default: RQ's).")
        parser.add_argument("--models", default="",
                            help="Comma-separated models to serve (default: every installed "
                                 "model the licence settings allow).")
        parser.add_argument("--no-warmup", action="store_true",
                            help="Load the model on the first job instead of at start.")
        parser.add_argument("--webhooks-only", action="store_true",
                            help="Only deliver webhooks (no model is loaded).")

    def handle(self, *args, **options):
        if options["webhooks_only"]:
            self._work([queue_module.webhooks_queue_name()], [], options)
            return
        models = self._models(options["models"])
        if not options["no_warmup"]:
            get_segmenter(models[0])
            self.stdout.write(f"Model loaded from {model_file(models[0])}")
        self.stdout.write(f"Serving {', '.join(models)}")
        # Queues in priority order: RQ takes a job from the first non-empty one, so batch jobs
        # start only when no interactive job (and no webhook) waits.
        self._work(queue_module.worker_queue_names(models), models, options)

    def _models(self, requested: str) -> list[str]:
        folder = settings.QUICKBG_MODELS_DIR
        allow = settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS
        names = [name.strip() for name in requested.split(",") if name.strip()]
        if not names:  # every installed model the licence settings allow, the default first
            names = [name for name in modelstore.installed(folder)
                     if modelstore.MODELS[name].commercial_use or allow]
            names.sort(key=lambda name: name != settings.QUICKBG_MODEL)
            if not names:
                raise CommandError(
                    f"No model is installed in {folder}. Run `python manage.py fetch_model` "
                    "(the default model) or `python manage.py fetch_model --model NAME`.")
        try:
            for name in names:
                modelstore.check_licence(name, allow_noncommercial=allow)
                modelstore.verify(folder, name)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        return list(dict.fromkeys(names))

    def _work(self, queues, models, options):
        # RQ["WORKER_CLASS"] (removal.worker.QuickBGWorker) and RQ["QUEUE_CLASS"] apply.
        queue = django_rq.get_queue(queues[0])
        worker = django_rq.get_worker(
            *queues, serializer=queue.serializer, name=options["name"],
        )
        worker.served_models = models
        worker.work(
            burst=options["burst"], with_scheduler=True, max_jobs=options["max_jobs"],
            logging_level=settings.LOG_LEVEL,
        )
