"""The pipeline's one entry point: image bytes in, cut-out bytes out.

``cut_out(data, segmenter=..., options=Options.parse(raw), limits=Limits())`` runs
decode -> segment -> refine -> (alpha matting) -> trim -> compose -> encode and reports per-stage
timings. The task runner (``removal.runner``), the ``removebg`` command and ``bench/pipeline.py``
all call it, so what is benchmarked is what runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from removal.pipeline import encode, matting, refine, segment, trim
from removal.pipeline.options import Options
from removal.pipeline.validate import Limits, decode

DECISIVE_BELOW = 16
DECISIVE_ABOVE = 239


@dataclass
class Result:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    metrics: dict = field(default_factory=dict)


class _Clock:
    """Per-stage wall-clock timings, in seconds."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - self._last, 4)
        self._last = now


def confidence(alpha: np.ndarray) -> float:
    """Share of pixels that are decisively background (< 16) or foreground (> 239)."""
    undecided = cv2.countNonZero(cv2.inRange(alpha, DECISIVE_BELOW, DECISIVE_ABOVE))
    return round(1.0 - undecided / alpha.size, 4)


def _mask(decoded, segmenter, options: Options, clock: _Clock, timeout) -> np.ndarray:
    """Full-resolution alpha: model, clean-up at model resolution, input alpha, matting."""
    tensor = segment.preprocess(decoded.rgb)
    clock.lap("preprocess")
    prediction = segmenter.run(tensor, timeout=timeout)
    clock.lap("inference")
    small = segment.postprocess(prediction)
    if options.refine:
        small = refine.refine(small)
    clock.lap("refine")
    alpha = segment.upscale(small, decoded.width, decoded.height)
    if decoded.alpha is not None:
        np.minimum(alpha, decoded.alpha, out=alpha)
    clock.lap("upscale")
    if options.alpha_matting:
        alpha = matting.alpha_matting(
            decoded.rgb, alpha,
            foreground_threshold=options.alpha_matting_foreground_threshold,
            background_threshold=options.alpha_matting_background_threshold,
            erode_size=options.alpha_matting_erode_size,
        )
        clock.lap("alpha_matting")
    return alpha


def cut_out(
    data: bytes,
    *,
    segmenter: segment.Segmenter,
    options: Options,
    limits: Limits,
    on_progress: Callable[[int], None] | None = None,
    inference_timeout: float | None = None,
) -> Result:
    """Cut the subject out of ``data``. Raises ``InvalidImage`` (incl. no foreground), and
    ``InferenceTimeout`` when the model run exceeds ``inference_timeout`` seconds."""
    progress = on_progress or (lambda percent: None)
    clock = _Clock()
    decoded = decode(data, limits)
    clock.lap("decode")
    progress(20)

    alpha = _mask(decoded, segmenter, options, clock, inference_timeout)
    progress(75)

    box, crop = trim.crop_box(alpha, trim.Margin.parse(options.crop_margin))
    if not options.crop:
        crop = (0, 0, decoded.width, decoded.height)
    rgb, alpha_out = trim.crop(decoded.rgb, crop), trim.crop(alpha, crop)
    score = confidence(alpha)
    clock.lap("trim")
    progress(80)

    pixels = encode.build(rgb, alpha_out, channels=options.channels, bg_color=options.bg_color)
    clock.lap("compose")
    body = encode.encode(pixels, options.format)
    clock.lap("encode")
    progress(95)

    return Result(
        data=body,
        content_type=encode.CONTENT_TYPES[options.format],
        extension=options.format,
        width=pixels.shape[1],
        height=pixels.shape[0],
        metrics={
            "stage_timings": clock.timings,
            "bbox": list(box),
            "crop_box": list(crop),
            "confidence": score,
            "input_format": decoded.format,
            "input_width": decoded.width,
            "input_height": decoded.height,
            "output_width": pixels.shape[1],
            "output_height": pixels.shape[0],
        },
    )
