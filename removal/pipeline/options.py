"""The output options of a task: the API's input contract, parsed in one place.

``Options.parse(raw)`` turns user input (JSON values or form strings) into a validated
``Options``; a bad value raises ``InvalidOption`` naming the field. The API's serializer, the
task runner and the ``removebg`` command all parse with it. Which model runs is not an output
option: it is the task's own ``model`` field.

Option names follow the remove.bg API where it has one (``format``, ``size``, ``channels``,
``bg_color``, ``crop``, ``crop_margin``, ``roi``, ``scale``, ``position``); the alpha-matting ones
are rembg's. The defaults are QuickBG's (the original size, PNG, cropped); the remove.bg endpoint
starts from remove.bg's own defaults instead (``removal.api.removebg``).

- ``size``: the most megapixels of the result (``SIZES``): ``preview``/``small``/``regular``
  0.25 MP, ``medium`` 1.5 MP, ``hd`` 4 MP, ``full``/``4k``/``auto``/``50mp`` the original.
- ``format``: ``png``, ``webp``, ``jpg``, ``zip`` (remove.bg's ``color.jpg`` + ``alpha.png``) or
  ``auto`` (JPEG when the result is opaque, i.e. on a background colour or image, else PNG).
- ``roi``: ``"x1 y1 x2 y2"``, each in pixels (``10`` or ``10px``) or percent of the original;
  only that region of the subject is kept.
- ``crop_margin``: one, two or four values in CSS order, each pixels (``30``/``30px``, at most
  500) or percent of the subject (at most 50 %).
- ``bg_color``: hex of 3, 4, 6 or 8 digits (alpha last: ``81d4fa77``) or a colour name.
- ``semitransparency``: ``false`` makes the subject opaque inside (the edge stays soft).
- ``add_shadow``: a soft contact shadow under the subject (``pipeline.shadow``).
- ``scale``: ``original`` or ``10%``-``100%``: the subject's size relative to the canvas.
- ``position``: ``original``, ``center``, or ``"H% V%"`` (one value: both): where the subject
  sits on the canvas. Scaling alone implies ``center``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from removal.pipeline import encode, trim
from removal.pipeline.errors import InvalidOption

__all__ = ["FORMATS", "CHANNELS", "InvalidOption", "Options"]

FORMATS = ("png", "webp", "jpg", "zip", "auto")
# Megapixels at most (None: the original, within the upload limits).
SIZES: dict[str, float | None] = {
    "preview": 0.25, "small": 0.25, "regular": 0.25, "medium": 1.5, "hd": 4.0,
    "full": None, "4k": None, "auto": None, "50mp": None,
}
PREVIEW_SIZES = ("preview", "small", "regular")
CHANNELS = ("rgba", "alpha")
MAX_MARGIN_PX = 500
MAX_MARGIN_PERCENT = 50
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


def _unset(value) -> bool:
    """JavaScript clients send ``undefined`` (as text) for options they leave out."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "undefined", "null"))


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


def _format_alias(value):
    return "jpg" if isinstance(value, str) and value.strip().lower() == "jpeg" else value


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise InvalidOption(name, f"must be one of {', '.join(choices)}")
    return text


def _bg_color(value) -> str | None:
    """remove.bg's colours (``encode.parse_color``): hex of 3, 4, 6 or 8 digits (alpha last)
    or a colour name; normalised to ``#rrggbb``, or ``#rrggbbaa`` when not opaque."""
    if value is None or value == "":
        return None
    try:
        red, green, blue, opacity = encode.parse_color(str(value))
    except ValueError:
        raise InvalidOption("bg_color", "must be a hex colour (fff, 81d4fa, 81d4fa77 with alpha "
                                        "last) or a colour name (green)") from None
    hex_alpha = "" if opacity == 255 else f"{opacity:02x}"
    return f"#{red:02x}{green:02x}{blue:02x}{hex_alpha}"


def _crop_margin(value) -> str:
    """One, two or four margins in CSS order (all; top/bottom left/right; top right bottom
    left), each pixels (``30`` or ``30px``) or a percentage of the subject (``10%``);
    normalised to as many values as were given (``trim.Margins.parse`` expands them)."""
    message = (
        f"must be pixels (0-{MAX_MARGIN_PX}) or a percentage (0-{MAX_MARGIN_PERCENT}%): one "
        "value, or two or four in CSS order (e.g. '30px' or '10px 5%')"
    )
    parts = _joined_percent(str(value).replace(",", " ").split())
    if len(parts) not in (1, 2, 4):
        raise InvalidOption("crop_margin", message)
    normalised = []
    for part in parts:
        try:
            margin = trim.Margin.parse(part.lower().removesuffix("px"))
        except ValueError:
            raise InvalidOption("crop_margin", message) from None
        limit = MAX_MARGIN_PERCENT if margin.percent else MAX_MARGIN_PX
        if margin.value > limit:
            raise InvalidOption("crop_margin", message)
        normalised.append(f"{margin.value:g}%" if margin.percent else str(int(margin.value)))
    return " ".join(normalised)


def _joined_percent(parts: list[str]) -> list[str]:
    """``["5", "%"]`` (a form's ``"5 %"``) -> ``["5%"]``."""
    joined: list[str] = []
    for part in parts:
        if part == "%" and joined:
            joined[-1] += "%"
        else:
            joined.append(part)
    return joined


def _length(name: str, text: str) -> str:
    """``"12"`` or ``"12px"`` (pixels) or ``"12.5%"``; returns it normalised (``"12"``)."""
    text = text.strip().lower().removesuffix("px")
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        number = float("nan")
    if not number >= 0 or (percent and number > 100) or (not percent and number != int(number)):
        raise InvalidOption(name, "each value must be pixels (e.g. 40px) or a percentage (e.g. "
                                  "10%)")
    return f"{number:g}%" if percent else str(int(number))


def _roi(value) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    parts = str(value).replace(",", " ").split()
    if len(parts) != 4:
        raise InvalidOption("roi", "must be four values 'x1 y1 x2 y2', each in px or %")
    return " ".join(_length("roi", part) for part in parts)


def _scale(value) -> str:
    text = str(value).strip().lower()
    if text == "original":
        return text
    message = "must be 'original' or a percentage from 10% to 100%"
    try:
        number = float(text.removesuffix("%"))
    except ValueError:
        raise InvalidOption("scale", message) from None
    if not text.endswith("%") or not 10 <= number <= 100:
        raise InvalidOption("scale", message)
    return f"{number:g}%"


def _position(value) -> str:
    text = str(value).strip().lower()
    if text in ("original", "center"):
        return text
    parts = text.split()
    message = "must be 'original', 'center', or one or two percentages (horizontal vertical)"
    if not 1 <= len(parts) <= 2 or not all(p.endswith("%") for p in parts):
        raise InvalidOption("position", message)
    try:
        numbers = [float(p[:-1]) for p in parts]
    except ValueError:
        raise InvalidOption("position", message) from None
    if not all(0 <= n <= 100 for n in numbers):
        raise InvalidOption("position", message)
    if len(numbers) == 1:
        numbers *= 2
    return " ".join(f"{n:g}%" for n in numbers)


def _removebg_switches(values: dict) -> dict:
    """remove.bg's ``semitransparency`` (default true: keep the matting's partial alpha; false:
    opaque inside the subject) and ``add_shadow`` (default false: a soft contact shadow)."""
    return {"semitransparency": _bool("semitransparency", values.get("semitransparency", True)),
            "add_shadow": _bool("add_shadow", values.get("add_shadow", False))}


def percent_or_pixels(text: str, extent: int) -> int:
    """A normalised length (``"40"`` or ``"10%"``) in pixels of ``extent``."""
    if text.endswith("%"):
        return int(round(extent * float(text[:-1]) / 100))
    return int(text)


@dataclass
class Options:
    """Output options of one task. Build from user input with ``Options.parse``."""

    format: str = "png"
    size: str = "full"
    channels: str = "rgba"
    bg_color: str | None = None
    crop: bool = True
    crop_margin: str = "10"
    refine: bool = True
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10
    roi: str | None = None
    scale: str = "original"
    position: str = "original"
    semitransparency: bool = True
    add_shadow: bool = False
    decontaminate: bool = True

    @classmethod
    def parse(cls, raw: dict | None) -> Options:
        """Validate user input (JSON or form strings). Keys that are not options are ignored;
        ``None``, ``""`` and ``"undefined"`` mean "not given"; a bad value raises
        ``InvalidOption``."""
        raw = {k: v for k, v in (raw or {}).items() if not _unset(v)}
        d = cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        options = cls(
            format=_choice("format", _format_alias(values.get("format", d.format)), FORMATS),
            size=_choice("size", values.get("size", d.size), tuple(SIZES)),
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
            roi=_roi(values.get("roi")),
            scale=_scale(values.get("scale", d.scale)),
            position=_position(values.get("position", d.position)),
            **_removebg_switches(values),
            decontaminate=_bool("decontaminate", values.get("decontaminate", d.decontaminate)),
        )
        if options.alpha_matting_background_threshold >= options.alpha_matting_foreground_threshold:
            raise InvalidOption(
                "alpha_matting_background_threshold",
                "must be lower than alpha_matting_foreground_threshold",
            )
        return options

    @property
    def max_megapixels(self) -> float | None:
        return SIZES[self.size]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
