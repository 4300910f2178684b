"""ISNet segmentation on ONNX Runtime, with our own pre- and post-processing.

The ORT session runs a rewritten copy of the weights file (``graph.py``: float32, one output;
same weights, less time than ORT's defaults on the shipped file), and rembg's
``DisCustomSession.predict`` is not used: it resizes with PIL LANCZOS (both ways) and
normalises in float64, slow at 12 MP (``bench/pipeline.py`` prints (b) against (c)). We do the
same arithmetic with OpenCV and float32 and call the ORT session directly:

* in: ``cv2.resize`` to 1024x1024, INTER_AREA when both sides shrink (an area average is what
  LANCZOS approximates when shrinking), INTER_CUBIC when
  a side grows (measured closer to LANCZOS than INTER_AREA/LINEAR there), then rembg's
  normalisation: divide by the image's own maximum, subtract 0.5, CHW;
* out: rembg's min-max stretch of the raw prediction, truncated to uint8 exactly as rembg does,
  then INTER_LINEAR back to the image size. ``tests/pipeline/test_quality.py`` holds the result to
  rembg's own ``remove()`` (IoU >= 0.99, mean |diff| <= 5/255).

One ``Segmenter`` per process (``get_segmenter``), created lazily on first use: ONNX Runtime's
thread pools do not survive ``fork()``, so it must be created in the process that runs jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from removal.pipeline import providers as ort_providers
from removal.pipeline.errors import InferenceTimeout
from removal.pipeline.trim import NoForeground

INPUT_SIZE = 1024
logger = logging.getLogger(__name__)


def session_options(threads: int, *, mem_arena: bool = True, mem_pattern: bool = False):
    """ONNX Runtime options for the worker.

    ``threads`` is the intra-op pool size (``QUICKBG_ORT_THREADS``; 0 lets ORT use one per core).
    Keep workers x threads <= cores. Inter-op parallelism stays at 1: ISNet is one chain of convs.

    Memory settings, chosen by measurement on the serving graph (``bench/pipeline.py --arena``
    prints the comparison; the figures are in ``bench/README.md``):

    * CPU memory arena ON. The model's input shape never changes (every image is resized to
      1024x1024 first), so the arena stops growing after the first job: it keeps one set of
      activation blocks and hands them out again instead of faulting in fresh pages each run.
      It is faster, for a higher resident size between jobs.
    * Memory pattern OFF: on top of the arena it was no faster and peaked higher.
    * glibc's mmap threshold is pinned at 128 KiB (``memory.return_large_blocks_to_the_os``,
      called by ``Segmenter``), so the pipeline's own large buffers go back to the OS.
    * Graph optimisation stays at ORT_ENABLE_ALL: EXTENDED holds less memory (no NCHWc weight
      copies) but runs much slower.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = mem_arena
    opts.enable_mem_pattern = mem_pattern
    return opts


@contextlib.contextmanager
def time_limit(timeout: float | None):
    """``RunOptions`` for ``session.run`` that stop the run after ``timeout`` seconds (a timer
    sets ``terminate``), raising ``InferenceTimeout``; ``None`` options without a timeout.

    A signal-based job timeout (RQ's SIGALRM) cannot interrupt a thread that is inside
    ``session.run``, so the worker passes the time its job has left.
    """
    if not timeout:
        yield None
        return
    import onnxruntime as ort

    run_options = ort.RunOptions()
    timer = threading.Timer(timeout, setattr, (run_options, "terminate", True))
    timer.daemon = True
    timer.start()
    try:
        yield run_options
    except Exception as exc:
        if run_options.terminate:
            raise InferenceTimeout(f"Model inference exceeded {timeout:.0f} s") from exc
        raise
    finally:
        timer.cancel()


class TensorModel:
    """What the pipeline asks of every model: ``mask(rgb)``, a uint8 mask (2-D; at the model's
    resolution or the image's: the pipeline refines it and scales it to the image).

    This base is the ISNet arithmetic around a bare ``run(tensor)`` (1x3x1024x1024 in,
    1x1x1024x1024 out): ``Segmenter`` below, and test doubles. rembg-engine models
    (``pipeline/sessions.py``) implement ``mask`` with rembg's own ``predict``.
    """

    def run(self, tensor: np.ndarray, timeout: float | None = None) -> np.ndarray:
        raise NotImplementedError

    def mask(self, rgb: np.ndarray, *, timeout: float | None = None, lap=None) -> np.ndarray:
        lap = lap or (lambda name: None)
        tensor = preprocess(rgb)
        lap("preprocess")
        prediction = self.run(tensor, timeout=timeout)
        lap("inference")
        ensure_foreground(prediction)  # before the stretch makes noise a "subject"
        return postprocess(prediction)


class Segmenter(TensorModel):
    """An ISNet ONNX Runtime session plus the arithmetic around it. ``run`` is thread-safe.

    The session runs the serving graph derived from ``model_path`` (``graph.py``: the same
    weights in float32, only the output we use), on the providers ``QUICKBG_ORT_PROVIDERS``
    asks for (``providers.py``; the CPU by default), with ``session_options``. It is not
    created through ``rembg.new_session``: importing rembg loads numba, scipy, scikit-image and
    pymatting, well over 100 MB resident in every worker. rembg is only imported for alpha
    matting; ``session`` gives a genuine rembg ``DisCustomSession`` around this same ORT session
    for code that wants to call rembg with it.
    """

    def __init__(self, model_path: str | os.PathLike, threads: int = 0, *, mem_arena=True,
                 mem_pattern=False, providers: list[str] | None = None):
        import onnxruntime as ort

        from removal.pipeline.graph import discard, ensure_serving_graph
        from removal.pipeline.memory import return_large_blocks_to_the_os

        return_large_blocks_to_the_os()  # before the session allocates anything
        path = Path(model_path).resolve()
        options = session_options(threads, mem_arena=mem_arena, mem_pattern=mem_pattern)
        if providers is None:  # QUICKBG_ORT_PROVIDERS (see ``providers``), CPU by default
            providers, dropped = ort_providers.from_environment()
            if dropped:
                logger.warning("ONNX Runtime providers %s are not available here; using %s",
                               ", ".join(dropped), ", ".join(providers))

        def load(model: Path | bytes):
            return ort.InferenceSession(str(model) if isinstance(model, Path) else model,
                                        sess_options=options, providers=providers)

        serving = ensure_serving_graph(path)
        try:
            self.inner = load(serving)
        except Exception as exc:
            if not isinstance(serving, Path) or serving == path:
                raise
            # A cached graph that does not load (a disk fault, a copy cut short) is rebuilt.
            logger.warning("Cached serving graph %s does not load (%s); rebuilding it.",
                           serving.name, exc)
            discard(serving)
            self.inner = load(ensure_serving_graph(path))
        self.input_name = self.inner.get_inputs()[0].name
        self.providers = self.inner.get_providers()
        self.model_path = path
        self.threads = threads
        self._rembg_session = None

    @property
    def session(self):
        """rembg's ``DisCustomSession`` sharing this ORT session (no second model load)."""
        if self._rembg_session is None:
            from rembg.sessions.dis_custom import DisCustomSession

            wrapper = DisCustomSession.__new__(DisCustomSession)
            wrapper.model_name = "dis_custom"
            wrapper.inner_session = self.inner
            self._rembg_session = wrapper
        return self._rembg_session

    def run(self, tensor: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """The bare model: 1x3x1024x1024 float32 in, 1x1x1024x1024 float32 out.

        ``timeout`` (seconds) bounds the run: a timer sets ORT's ``RunOptions.terminate`` and
        ``InferenceTimeout`` is raised. A signal-based job timeout (RQ's SIGALRM) cannot
        interrupt a thread that is inside ``session.run``, so the worker passes the time its
        job has left.
        """
        with time_limit(timeout) as run_options:
            return self.inner.run(None, {self.input_name: tensor}, run_options)[0]


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """rembg's ``normalize`` for ISNet in float32: /max, -0.5, std 1, CHW with a batch axis."""
    height, width = rgb.shape[:2]
    shrink = width >= INPUT_SIZE and height >= INPUT_SIZE
    while width >= 2 * INPUT_SIZE and height >= 2 * INPUT_SIZE:
        # Exact halving takes OpenCV's integer-factor INTER_AREA path: at 12 MP halving first
        # and then shrinking the rest was much faster than one fractional INTER_AREA, with a
        # mean difference of 0.1 grey level.
        width, height = width // 2, height // 2
        rgb = cv2.resize(rgb[: 2 * height, : 2 * width], (width, height),
                         interpolation=cv2.INTER_AREA)
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    small = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
    tensor = np.empty((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    scale = np.float32(1.0 / max(int(small.max()), 1))
    for channel in range(3):
        plane = tensor[0, channel]
        np.multiply(small[:, :, channel], scale, out=plane, casting="unsafe")
        plane -= np.float32(0.5)
    return tensor


# The model's raw output is a probability; rembg's min-max stretch (``postprocess``) turns even
# a blank image's faint noise (max ~0.02-0.05 on uniform white, grey, black, gradients) into a
# full-range mask. A subject the model sees reaches ~1.0 (0.9999+ on every fixture photo).
SUBJECT_ABOVE = 0.5
SUBJECT_PIXELS = 64  # at the model's 1024 x 1024: an 8 x 8 patch


def has_foreground(prediction: np.ndarray) -> bool:
    """Whether the raw output holds a subject: at least ``SUBJECT_PIXELS`` model pixels above
    ``SUBJECT_ABOVE``. Without one the cut-out would be stretched noise (remove.bg answers
    ``unknown_foreground``; ``trim.NoForeground`` here)."""
    return int(np.count_nonzero(prediction > SUBJECT_ABOVE)) >= SUBJECT_PIXELS


def ensure_foreground(prediction: np.ndarray) -> None:
    """Raise ``trim.NoForeground`` unless ``has_foreground(prediction)``: every model's check,
    the serving graph's (``TensorModel.mask``) and rembg sessions' (``sessions.RembgSegmenter``,
    on the raw output it keeps from rembg's run)."""
    if not has_foreground(prediction):
        raise NoForeground()


def postprocess(prediction: np.ndarray) -> np.ndarray:
    """rembg's min-max stretch of the raw output, truncated to uint8 the same way."""
    pred = prediction[0, 0]
    lo, hi = float(pred.min()), float(pred.max())
    span = np.float32(hi - lo) if hi > lo else np.float32(1.0)
    pred = pred - np.float32(lo)
    pred *= np.float32(255.0) / span
    return pred.astype(np.uint8)


def upscale(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Model-resolution mask to image size (bilinear; rembg uses LANCZOS, within 1-2 levels)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


_lock = threading.Lock()
_segmenters: dict[tuple[str, int], Segmenter] = {}


def get_segmenter(model_path: str | os.PathLike, threads: int = 0) -> Segmenter:
    """The process-wide segmenter for this model file, created on first call and then reused."""
    key = (str(model_path), threads)
    with _lock:
        if key not in _segmenters:
            _segmenters[key] = Segmenter(model_path, threads)
        return _segmenters[key]
