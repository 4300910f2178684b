"""Extra catalogue entries from a JSON file: ``QUICKBG_EXTRA_MODELS`` (your own model files,
and the tests' tiny models: ``tests/tiny_models.py``).

Settings call ``load_extra`` at start-up and register the entries (``modelstore.register``), so
every process (web, workers, commands) sees the same catalogue and a queue exists per entry. An
entry is installed like any other model: ``fetch_model --model NAME --from-file PATH`` checks
the file against the entry's checksum, or ``fetch_model --model NAME`` downloads its ``url``.
Plain Python, no Django.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from removal.modelstore import BUILTIN, ENGINES, NAME_RE, ModelError, ModelSpec

EXTRA_FIELDS = {"name", "purpose", "engine", "session", "input_size", "filename", "checksum",
                "licence", "memory_mb", "url", "commercial_use"}


def load_extra(path: str | os.PathLike) -> list[ModelSpec]:
    """Catalogue entries from a JSON file: a list of objects with

    * ``name`` (lower-case letters, digits, ``-_.``; not a built-in name), ``purpose``;
    * ``engine``: ``rembg`` (then ``session``: the rembg session that runs it, e.g. ``u2net``,
      ``birefnet-general``, ``u2net_custom``, ``dis_custom``) or ``serving-graph`` (an
      ISNet-style file run on QuickBG's own path);
    * ``checksum``: ``sha256:<hex>`` (or ``md5:<hex>``) of the file; ``input_size``;
    * optional: ``filename``, ``licence``, ``memory_mb``, ``url`` (downloaded with pooch by
      ``fetch_model``; without it only ``--from-file`` installs it), ``commercial_use``.

    For a rembg session that downloads its own file (``u2net``, ``birefnet-general``...) the
    file is stored as ``<name>/<session>.onnx``, where rembg looks for it.
    """
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the extra models file {path}: {exc}") from None
    if not isinstance(entries, list):
        raise ModelError(f"{path}: expected a JSON list of model entries")
    specs = []
    for index, entry in enumerate(entries):
        where = f"{path} entry {index}"
        if not isinstance(entry, dict):
            raise ModelError(f"{where}: expected an object")
        unknown = set(entry) - EXTRA_FIELDS
        if unknown:
            raise ModelError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        name = str(entry.get("name", ""))
        if not NAME_RE.match(name) or name in {s.name for s in BUILTIN}:
            raise ModelError(f"{where}: name {name!r} is invalid or a built-in model's")
        engine = entry.get("engine")
        if engine not in ENGINES:
            raise ModelError(f"{where}: engine must be one of {', '.join(ENGINES)}")
        checksum = str(entry.get("checksum", ""))
        algo, _, hexdigest = checksum.partition(":")
        if algo not in ("sha256", "md5") or not re.fullmatch(r"[0-9a-f]{32,64}", hexdigest):
            raise ModelError(f"{where}: checksum must be 'sha256:<hex>' or 'md5:<hex>'")
        session = str(entry.get("session") or ("dis_custom" if engine == "serving-graph"
                                                 else ""))
        if engine == "rembg" and not session:
            raise ModelError(f"{where}: a rembg model needs 'session' (a rembg session name)")
        custom = session.endswith("_custom")
        filename = str(entry.get("filename") or (f"{name}.onnx" if custom or engine ==
                                                 "serving-graph" else f"{session}.onnx"))
        specs.append(ModelSpec(
            name=name, purpose=str(entry.get("purpose", "")), engine=engine, session=session,
            input_size=int(entry.get("input_size", 1024)), filename=filename,
            checksum=checksum, licence=str(entry.get("licence", "unknown")),
            memory_mb=int(entry.get("memory_mb", 0)),
            source="url" if entry.get("url") else "file", url=str(entry.get("url", "")),
            commercial_use=bool(entry.get("commercial_use", True)), extra=True,
        ))
    return specs
