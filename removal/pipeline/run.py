"""The pipeline's one entry point: image bytes in, result bytes out.

``process(data, segmenter=..., options=Options.parse(raw), limits=Limits())`` runs
decode -> segment -> refine -> (alpha matting) -> trim -> compose -> encode and reports per-stage
timings. The worker (``removal.processing``), the management commands and ``bench/pipeline.py``
all call it, so what is benchmarked is what runs.

Option names follow the remove.bg API where it has one (``format``, ``channels``, ``bg_color``,
``crop``, ``crop_margin``); the alpha-matting ones are rembg's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import cv2
import numpy as np

from removal.pipeline import encode, matting, refine, segment, trim
from removal.pipeline.validate import Limits, decode

FORMATS = ("png", "webp")
CHANNELS = ("rgba", "alpha")
MAX_MARGIN_PX = 500
MAX_MARGIN_PERCENT = 50
DECISIVE_BELOW = 16
DECISIVE_ABOVE = 239
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


class InvalidOption(ValueError):
    """An output option has a bad value. ``str(exc)`` names the field: ``"field: message"``."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidOption(name, "must be true or false")


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise InvalidOption(name, f"must be an integer between {lo} and {hi}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        number = None
    if not isinstance(number, int) or not lo <= number <= hi:
        raise InvalidOption(name, f"must be an integer between {lo} and {hi}")
    return number


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise InvalidOption(name, f"must be one of {', '.join(choices)}")
    return text


def _bg_color(value) -> str | None:
    if value is None or value == "":
        return None
    try:
        red, green, blue = encode.parse_hex_color(str(value))
    except ValueError:
        raise InvalidOption("bg_color", "must be a hex colour like '#ffffff' or 'ffffff'") from None
    return f"#{red:02x}{green:02x}{blue:02x}"


def _crop_margin(value) -> str:
    message = (
        f"must be pixels (0-{MAX_MARGIN_PX}) or a percentage (0-{MAX_MARGIN_PERCENT}%)"
    )
    try:
        margin = trim.Margin.parse(str(value))
    except ValueError:
        raise InvalidOption("crop_margin", message) from None
    limit = MAX_MARGIN_PERCENT if margin.percent else MAX_MARGIN_PX
    if margin.value > limit:
        raise InvalidOption("crop_margin", message)
    if margin.percent:
        return f"{margin.value:g}%"
    return str(int(margin.value))


@dataclass
class Options:
    """Output options of one task. Build from user input with ``Options.parse``."""

    format: str = "png"
    channels: str = "rgba"
    bg_color: str | None = None
    crop: bool = True
    crop_margin: str = "10"
    refine: bool = True
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10

    @classmethod
    def parse(cls, raw: dict | None) -> Options:
        """Validate user input (JSON or form strings). Keys that are not options are ignored
        (the task's options also hold e.g. ``model``); ``None`` and ``""`` mean "not given";
        a bad value raises ``InvalidOption``."""
        raw = {k: v for k, v in (raw or {}).items() if v is not None and v != ""}
        d = cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        options = cls(
            format=_choice("format", values.get("format", d.format), FORMATS),
            channels=_choice("channels", values.get("channels", d.channels), CHANNELS),
            bg_color=_bg_color(values.get("bg_color")),
            crop=_bool("crop", values.get("crop", d.crop)),
            crop_margin=_crop_margin(values.get("crop_margin", d.crop_margin)),
            refine=_bool("refine", values.get("refine", d.refine)),
            alpha_matting=_bool("alpha_matting", values.get("alpha_matting", d.alpha_matting)),
            alpha_matting_foreground_threshold=_int(
                "alpha_matting_foreground_threshold",
                values.get("alpha_matting_foreground_threshold", 240), 0, 255,
            ),
            alpha_matting_background_threshold=_int(
                "alpha_matting_background_threshold",
                values.get("alpha_matting_background_threshold", 10), 0, 255,
            ),
            alpha_matting_erode_size=_int(
                "alpha_matting_erode_size", values.get("alpha_matting_erode_size", 10), 0, 100
            ),
        )
        if options.alpha_matting_background_threshold >= options.alpha_matting_foreground_threshold:
            raise InvalidOption(
                "alpha_matting_background_threshold",
                "must be lower than alpha_matting_foreground_threshold",
            )
        return options

    def to_dict(self) -> dict:
        return asdict(self)


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


def process(
    data: bytes,
    *,
    segmenter: segment.Segmenter,
    options: Options,
    limits: Limits,
    on_progress: Callable[[int], None] | None = None,
    inference_timeout: float | None = None,
) -> Result:
    """Cut the subject out of ``data``. Raises ``InvalidImage`` (incl. no foreground), and
    ``segment.InferenceTimeout`` when the model run exceeds ``inference_timeout`` seconds."""
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
