"""Which files a run takes, and where each one's result goes.

The listing is a generator over ``os.scandir`` one directory at a time (sorted, so runs are
repeatable): memory holds one directory's names, never the whole tree.

- A folder is walked recursively; its files' paths relative to it are mirrored under the output
  folder (``photos/a/b.jpg`` -> ``OUT/a/b.png``). Given several paths, each folder's tree goes
  under its own name (``OUT/photos/a/b.png``) and each file under its name.
- ``--glob`` patterns (repeatable, matched case-insensitively against the file name, or the
  relative path when the pattern has a ``/``) choose the files; the default takes JPEG, PNG,
  WEBP and BMP names. Files named on the command line are always taken.
- The output folder and dot-folders are never walked. Two inputs whose names differ only in
  their extension (``a.jpg``, ``a.png``) keep it in the result's name (``a.jpg.png``), so one
  result never overwrites another.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_PATTERNS = ("*.jpg", "*.jpeg", "*.png", "*.webp", "*.bmp")


@dataclass(frozen=True)
class Item:
    path: Path  # the input file
    rel: str  # its place in the output tree (posix), without the result's extension
    keep_suffix: bool = False  # a sibling has the same stem: keep the input's extension


def matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    for pattern in patterns or DEFAULT_PATTERNS:
        target = rel.lower() if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lower()):
            return True
    return False


def output_rel(item: Item, extension: str) -> str:
    """The result's path in the output tree for ``extension``."""
    path = PurePosixPath(item.rel)
    name = f"{path.name}.{extension}" if item.keep_suffix else f"{path.stem}.{extension}"
    return str(path.with_name(name))


def walk(folder: Path, prefix: str, patterns: list[str], skip: set[Path]) -> Iterator[Item]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    files = [e for e in entries if not e.name.startswith(".") and e.is_file()]
    chosen = [e for e in files if matches(f"{prefix}{e.name}", patterns)]
    stems: dict[str, int] = {}
    for entry in chosen:
        stem = os.path.splitext(entry.name)[0]
        stems[stem] = stems.get(stem, 0) + 1
    for entry in chosen:
        yield Item(Path(entry.path), f"{prefix}{entry.name}",
                   keep_suffix=stems[os.path.splitext(entry.name)[0]] > 1)
    del files, chosen
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if Path(entry.path).resolve() in skip:
            continue
        yield from walk(Path(entry.path), f"{prefix}{entry.name}/", patterns, skip)


def roots(sources: list[Path]) -> list[tuple[Path, str]]:
    """Each source and the prefix its files get in the output tree."""
    if len(sources) == 1:
        return [(sources[0], "" if sources[0].is_dir() else "")]
    return [(s, f"{s.resolve().name}/" if s.is_dir() else "") for s in sources]


def items(sources: list[Path], patterns: list[str], output: Path) -> Iterator[Item]:
    skip = {output.resolve()}
    for source, prefix in roots(sources):
        if source.is_dir():
            yield from walk(source, prefix, patterns, skip)
        else:
            yield Item(source, f"{prefix}{source.name}")


def count(sources: list[Path], patterns: list[str], output: Path) -> int:
    """How many files ``items`` yields (a second walk, for the progress bar's total)."""
    return sum(1 for _ in items(sources, patterns, output))


def rel_for(path: Path, sources: list[Path]) -> str | None:
    """A watched file's place in the output tree (``None`` if it is under no source)."""
    for source, prefix in roots(sources):
        if not source.is_dir():
            continue
        try:
            relative = path.resolve().relative_to(source.resolve())
        except ValueError:
            continue
        if any(part.startswith(".") for part in relative.parts):
            return None
        return prefix + relative.as_posix()
    return None
