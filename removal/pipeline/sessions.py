"""Models other than ISNet: rembg's own sessions on QuickBG's ONNX Runtime settings.

``RembgSegmenter`` makes the session with ``rembg.new_session(session, sess_opts=...,
providers=...)``: the same ``session_options`` (threads, arena) and ``QUICKBG_ORT_PROVIDERS`` as
the ISNet path, and rembg's ``predict`` does all the pre- and post-processing of its family
(U²-Net's ImageNet normalisation at 320 px, BiRefNet's sigmoid over logits, BRIA's, BEN2's...):
nothing of it is rewritten here. ``mask`` returns rembg's mask (at the image's size) as the same
uint8 array the ISNet path returns, so refine, matting, trim and encode stay model-agnostic.

Where the file is: rembg finds ``<session>.onnx`` in the folder ``U2NET_HOME`` names
(``modelstore.rembg_home``), which is the model's own folder under the models folder; the
caller verifies the file first, so rembg never downloads at request time. ``*_custom`` sessions
(your own file) get ``model_path``.

Bounding a run: rembg calls ``inner_session.run(None, feed)`` itself, so the ORT session is
wrapped (``_BoundedSession``) to pass the ``RunOptions`` of ``segment.time_limit``: the same
timeout as the ISNet path, without touching rembg's code.

No subject: rembg's ``predict`` stretches its output to the full range (min-max), which turns a
blank image's faint response into a full "subject". The wrapper keeps the run's raw output, so
``mask`` applies the ISNet path's own check to it (``segment.ensure_foreground``, before the
stretch counts) and raises ``trim.NoForeground`` (remove.bg's ``unknown_foreground``): on the
probability for sessions whose raw output is a logit (rembg's ``sigmoid`` for the BiRefNet
family), as it comes for the others. A class map (``u2net_cloth_seg``'s argmax) is not
stretched: an empty one gives an empty mask, which ``trim`` refuses.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from removal import modelstore
from removal.pipeline import providers as ort_providers
from removal.pipeline.segment import TensorModel, ensure_foreground, session_options, time_limit

logger = logging.getLogger(__name__)

# Per-session arguments to rembg's ``predict``: u2net_cloth_seg's "attire" is every garment.
PREDICT_KWARGS = {"u2net_cloth_seg": {"cc": "attire"}}


class _BoundedSession:
    """The ORT session rembg holds, passing this thread's ``RunOptions`` to every run and
    keeping (for this thread) the first output of the last run: what rembg's ``predict``
    reads its mask from."""

    def __init__(self, inner):
        self._inner = inner
        self._local = threading.local()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def run(self, output_names, feed, run_options=None):
        outputs = self._inner.run(output_names, feed,
                                  getattr(self._local, "options", None) or run_options)
        self._local.output = outputs[0]
        return outputs

    def take_output(self) -> np.ndarray | None:
        """The first output of this thread's last run (and forget it)."""
        output, self._local.output = getattr(self._local, "output", None), None
        return output


class RembgSegmenter(TensorModel):
    """A rembg session for ``session`` (a rembg session name) with its weights in ``home``."""

    def __init__(self, session: str, home: str | os.PathLike, model_file: str | os.PathLike,
                 threads: int = 0, *, providers: list[str] | None = None):
        from rembg import new_session

        from removal.pipeline.memory import return_large_blocks_to_the_os

        return_large_blocks_to_the_os()
        if providers is None:
            providers, dropped = ort_providers.from_environment()
            if dropped:
                logger.warning("ONNX Runtime providers %s are not available here; using %s",
                               ", ".join(dropped), ", ".join(providers))
        kwargs = {"model_path": str(model_file)} if session.endswith("_custom") else {}
        with modelstore.rembg_home(home):
            self.session = new_session(session, sess_opts=session_options(threads),
                                       providers=providers, **kwargs)
        self.inner = self.session.inner_session
        self._bounded = _BoundedSession(self.inner)
        self.session.inner_session = self._bounded
        self.providers = self.inner.get_providers()
        self.model_path = Path(model_file).resolve()
        self.threads = threads
        self._predict_kwargs = PREDICT_KWARGS.get(session, {})

    def mask(self, rgb: np.ndarray, *, timeout: float | None = None, lap=None) -> np.ndarray:
        from PIL import Image

        with time_limit(timeout) as run_options:
            self._bounded._local.options = run_options
            try:
                masks = self.session.predict(Image.fromarray(rgb), **self._predict_kwargs)
            finally:
                self._bounded._local.options = None
        self._ensure_foreground(self._bounded.take_output())
        arrays = [np.asarray(mask.convert("L"), dtype=np.uint8) for mask in masks]
        mask = arrays[0] if len(arrays) == 1 else np.maximum.reduce(arrays)
        return np.ascontiguousarray(mask)

    def _ensure_foreground(self, output: np.ndarray | None) -> None:
        """``segment.ensure_foreground`` on the raw output rembg made its mask of (N x C x H x W;
        channel 0 is what ``predict`` stretches). A class map (C > 1) is left to ``trim``."""
        if output is None or output.ndim != 4 or output.shape[1] != 1:
            return
        sigmoid = getattr(self.session, "sigmoid", None)  # rembg's, where predict applies it
        ensure_foreground(sigmoid(output) if sigmoid is not None else output)


class LoadedModels:
    """A worker's loaded model sessions: made on first use, at most ``capacity`` kept, the least
    recently used one dropped (and its memory returned) to make room. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: OrderedDict[str, TensorModel] = OrderedDict()
        self.evicted: list[str] = []  # names dropped, oldest first (logs and tests read it)

    def get(self, name: str, load, capacity: int) -> TensorModel:
        from removal.pipeline.memory import release_freed_memory

        with self._lock:
            if name in self._items:
                self._items.move_to_end(name)
                return self._items[name]
            dropped = []
            while self._items and len(self._items) >= capacity:
                dropped.append(self._items.popitem(last=False)[0])  # the session goes with it
            if dropped:
                release_freed_memory()
                self.evicted += dropped
                logger.info("Dropped model session(s) %s (QUICKBG_MAX_LOADED_MODELS=%s)",
                            ", ".join(dropped), capacity)
            model = load()
            self._items[name] = model
            return model

    def names(self) -> list[str]:
        """Loaded models, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        from removal.pipeline.memory import release_freed_memory

        with self._lock:
            self._items.clear()
        release_freed_memory()


def new_model(name: str, models_dir: str | os.PathLike, threads: int = 0) -> TensorModel:
    """A new session for the catalogue's model ``name`` after verifying its file (raises
    ``modelstore.ModelError``): ISNet's serving graph, or rembg's session. The worker's
    ``runner.load_model`` and ``bench/models.py`` both make models here."""
    from removal.pipeline.segment import Segmenter

    spec = modelstore.get(name)
    path = modelstore.verify(models_dir, name)
    if spec.engine == "serving-graph":
        return Segmenter(path, threads)
    return RembgSegmenter(spec.session, modelstore.model_home(models_dir, name), path, threads)
