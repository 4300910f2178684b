"""The pipeline's one entry point: image bytes in, cut-out bytes out.

``cut_out(data, segmenter=..., options=Options.parse(raw), limits=Limits())`` runs
decode -> segment (no subject: ``NoForeground``) -> refine -> (alpha matting) -> (opaque inside:
``semitransparency=false``) -> roi -> trim -> scale/position -> size limit -> (shadow) ->
decontaminate (the foreground's colour under fractional alpha, unless ``decontaminate=false``) ->
compose (colour or ``background`` image) -> encode and reports per-stage timings, where the
subject ended up in the result (``foreground``: top, left, width, height in result pixels) and
the mask's ``confidence``. The task runner (``removal.runner``), the ``removebg`` command and
``bench/pipeline.py`` all call it, so what is benchmarked is what runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from removal.pipeline import (
    decontaminate,
    encode,
    layout,
    matting,
    refine,
    segment,
    shadow,
    trim,
)
from removal.pipeline.options import Options
from removal.pipeline.validate import Limits, decode

# Decisive mask pixels: alpha < 0.05 (0-12 of 255) or > 0.95 (243-255).
DECISIVE_BELOW = 13
DECISIVE_ABOVE = 242


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
    """Share of mask pixels that are decisive: background (alpha < 0.05, i.e. <= 12 of 255) or
    foreground (alpha > 0.95, >= 243). A low share hints that the cut-out needs a look."""
    undecided = cv2.countNonZero(cv2.inRange(alpha, DECISIVE_BELOW, DECISIVE_ABOVE))
    return round(1.0 - undecided / alpha.size, 4)


def _mask(decoded, segmenter, options: Options, clock: _Clock, timeout) -> np.ndarray:
    """Full-resolution alpha: model, clean-up at model resolution, input alpha, matting."""
    # Any model (``segment.TensorModel``): the ISNet serving graph or a rembg session; both
    # give a uint8 mask, at the model's resolution or the image's.
    small = segmenter.mask(decoded.rgb, timeout=timeout, lap=clock.lap)
    clock.lap("inference")
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
    if not options.semitransparency:
        alpha = refine.solidify(alpha)
    return alpha


def foreground(alpha: np.ndarray) -> dict:
    """Where the subject is in the result: ``{top, left, width, height}`` of alpha > 0."""
    box = trim.foreground_box(alpha)
    if box is None:
        return {"top": 0, "left": 0, "width": 0, "height": 0}
    x0, y0, x1, y1 = box
    return {"top": y0, "left": x0, "width": x1 - x0, "height": y1 - y0}


def cut_out(
    data: bytes,
    *,
    segmenter: segment.TensorModel,
    options: Options,
    limits: Limits,
    on_progress: Callable[[int], None] | None = None,
    inference_timeout: float | None = None,
    background: bytes | None = None,
) -> Result:
    """Cut the subject out of ``data``; with ``background`` (image bytes, validated like an
    upload) composite it over that image. Raises ``InvalidImage`` (incl. no foreground), and
    ``InferenceTimeout`` when the model run exceeds ``inference_timeout`` seconds."""
    progress = on_progress or (lambda percent: None)
    clock = _Clock()
    decoded = decode(data, limits)
    backdrop = decode(background, limits).rgb if background is not None else None
    clock.lap("decode")
    progress(20)

    alpha = _mask(decoded, segmenter, options, clock, inference_timeout)
    progress(75)

    score = confidence(alpha)
    alpha = layout.apply_roi(alpha, options.roi)
    box, crop = trim.crop_box(alpha, trim.Margins.parse(options.crop_margin))
    if not options.crop:
        crop = (0, 0, decoded.width, decoded.height)
    elif options.add_shadow:  # room for the shadow past the subject's box
        room = trim.padded_box(box, decoded.width, decoded.height, trim.Margin(shadow.reach(box)))
        crop = (min(crop[0], room[0]), min(crop[1], room[1]), max(crop[2], room[2]),
                max(crop[3], room[3]))
    rgb, alpha_out = trim.crop(decoded.rgb, crop), trim.crop(alpha, crop)
    rgb, alpha_out = layout.place(rgb, alpha_out, scale=options.scale, position=options.position)
    rgb, alpha_out = layout.limit_size(rgb, alpha_out, options.max_megapixels)
    clock.lap("trim")
    progress(80)

    if options.decontaminate and options.channels == "rgba":
        rgb = decontaminate.decontaminate(rgb, alpha_out, in_place=True)
        clock.lap("decontaminate")
    height, width = alpha_out.shape
    if backdrop is not None and options.channels == "rgba":
        backdrop = layout.cover(backdrop, width, height)
    under = (shadow.contact_shadow(alpha_out)
             if options.add_shadow and options.channels == "rgba" else None)
    pixels = encode.build(rgb, alpha_out, channels=options.channels, bg_color=options.bg_color,
                          background=backdrop, shadow=under)
    clock.lap("compose")
    fmt = encode.resolve_format(options.format, pixels)
    if fmt == "zip":
        body = encode.encode_zip(*encode.zip_layers(pixels, rgb, alpha_out))
    else:
        body = encode.encode(pixels, fmt)
    clock.lap("encode")
    progress(95)

    return Result(
        data=body,
        content_type=encode.CONTENT_TYPES[fmt],
        extension=fmt,
        width=width,
        height=height,
        metrics={
            "stage_timings": clock.timings,
            "bbox": list(box),
            "crop_box": list(crop),
            "foreground": foreground(alpha_out),
            "confidence": score,
            "input_format": decoded.format,
            "input_width": decoded.width,
            "input_height": decoded.height,
            "output_width": width,
            "output_height": height,
            "output_format": fmt,
        },
    )
