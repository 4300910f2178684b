"""``manage.py removebg PATH... [-o OUT]``: cut out local images with the service's pipeline.

No queue, no database, no storage: each file goes through the same ``pipeline.cutout.cut_out`` the
worker runs, with the same validation limits and the same model. Folders are scanned for
``.jpg/.jpeg/.png/.webp/.bmp`` files (``--recursive`` to descend). Where results go:

- no ``-o``: next to each input as ``<name>-nobg.<ext>`` (folder scans skip ``*-nobg.*``);
- ``-o FILE`` (one input file, ``FILE`` has an extension and is not a folder): exactly there;
- ``-o DIR``: ``DIR/<name>.<ext>``, keeping sub-folders of a scanned folder.

A file that fails is reported and the rest go on; the exit status is non-zero when any failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from removal import modelstore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
NOBG = "-nobg"


@dataclass(frozen=True)
class Item:
    source: Path
    relative: Path  # where it sits under the folder it was found in (its name for a file arg)


class Command(BaseCommand):
    help = (
        "Remove the background of local image files or folders with QuickBG's pipeline, "
        "without the queue. Writes <name>-nobg.png next to each input unless -o is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                            help="Image files and/or folders of images.")
        parser.add_argument("-o", "--output", type=Path, metavar="OUT",
                            help="Output folder, or output file when there is one input file.")
        parser.add_argument("-r", "--recursive", action="store_true",
                            help="Also process images in sub-folders of folder arguments.")
        parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                            help="A processing option as in the API's task options, e.g. "
                                 "format=webp, bg_color=#ffffff, crop=false (repeatable).")
        parser.add_argument("--model", choices=sorted(modelstore.MODELS),
                            help="Model to use (default: QUICKBG_MODEL).")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, **options):
        # Imported here so `manage.py help` does not load the image stack.
        from removal.pipeline.cutout import cut_out
        from removal.pipeline.options import Options
        from removal.runner import get_segmenter
        from removal.services.uploads import validation_limits

        model = options["model"] or settings.QUICKBG_MODEL
        if not modelstore.is_present(settings.QUICKBG_MODELS_DIR, model):
            raise CommandError(
                f"The model {model} is not in {settings.QUICKBG_MODELS_DIR}. "
                f"Run `python manage.py fetch_model --model {model}` first."
            )
        raw = self.parse_options(options["option"])
        unknown = sorted(set(raw) - set(Options.names()))
        if unknown:
            raise CommandError(f"Unknown --option {', '.join(unknown)}; known: "
                               + ", ".join(Options.names()))
        try:
            task_options = Options.parse(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a usage error
            raise CommandError(f"Invalid --option: {exc}") from None

        items, missing = self.collect(options["paths"], recursive=options["recursive"])
        for path in missing:
            self.stdout.write(self.style.ERROR(f"FAILED {path}: no such file or folder"))
        if not items and not missing:
            raise CommandError("No images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES))
                               + ").")
        single_file = self.single_file_target(options["output"], items)
        limits = validation_limits()
        segmenter = None
        ok, failed = 0, len(missing)
        taken: set[Path] = set()
        bar = tqdm(items, unit="image", desc="removebg", file=self.stderr._out,
                   disable=options["no_progress"] or not items, leave=False)
        for item in bar:
            started = time.perf_counter()
            try:
                data = item.source.read_bytes()
                if segmenter is None:
                    segmenter = get_segmenter(model)
                result = cut_out(data, segmenter=segmenter, options=task_options, limits=limits)
                target = single_file or self.target(item, options["output"], result.extension,
                                                    taken)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(result.data)
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next file
                failed += 1
                bar.write(self.style.ERROR(f"FAILED {item.source}: {exc}"), file=self.stdout._out)
                continue
            taken.add(target)
            ok += 1
            elapsed = time.perf_counter() - started
            bar.write(f"ok {item.source} -> {target} ({elapsed:.1f} s)", file=self.stdout._out)
        summary = f"{ok} processed, {failed} failed."
        if failed:
            self.stdout.write(self.style.ERROR(summary))
            raise CommandError(f"{failed} of {ok + failed} image(s) failed.")
        self.stdout.write(self.style.SUCCESS(summary))

    @staticmethod
    def parse_options(pairs: list[str]) -> dict:
        parsed = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--option needs KEY=VALUE, got {pair!r}")
            parsed[key.strip()] = value.strip()
        return parsed

    @staticmethod
    def collect(paths: list[Path], *, recursive: bool) -> tuple[list[Item], list[Path]]:
        items, missing, seen = [], [], set()

        def add(file: Path, relative: Path) -> None:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                items.append(Item(file, relative))

        for path in paths:
            if path.is_dir():
                for file in sorted(path.rglob("*") if recursive else path.iterdir()):
                    if (file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
                            and not file.stem.endswith(NOBG)):
                        add(file, file.relative_to(path))
            elif path.is_file():
                add(path, Path(path.name))
            else:
                missing.append(path)
        return items, missing

    @staticmethod
    def single_file_target(output: Path | None, items: list[Item]) -> Path | None:
        if output is None or output.is_dir() or not output.suffix:
            return None
        if len(items) != 1:
            raise CommandError(f"-o {output} names a file, but there are {len(items)} inputs; "
                               "give a folder instead.")
        return output

    @staticmethod
    def target(item: Item, output: Path | None, extension: str, taken: set[Path]) -> Path:
        if output is None:
            folder, stem = item.source.parent, item.source.stem + NOBG
        else:
            folder, stem = output / item.relative.parent, item.relative.stem
        target = folder / f"{stem}.{extension}"
        if target in taken or target.resolve() == item.source.resolve():
            # photo.jpg and photo.png in one folder: keep both results.
            target = folder / f"{stem}-{item.source.suffix.lstrip('.').lower()}.{extension}"
        return target
