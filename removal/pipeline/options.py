"""The output options of a task: the API's input contract, parsed in one place.

``Options.parse(raw)`` turns user input (JSON values or form strings) into a validated
``Options``; a bad value raises ``InvalidOption`` naming the field. The API's serializer, the
task runner and the ``removebg`` command all parse with it. Which model runs is not an output
option: it is the task's own ``model`` field.

Option names follow the remove.bg API where it has one; the alpha-matting ones are rembg's. The
defaults are QuickBG's (the original size, PNG, cropped); the remove.bg endpoint starts from
remove.bg's own defaults instead (``removal.api.removebg``).

Each field of ``Options`` carries its contract in its metadata (``_option``): the help text,
the choices or the integer range, and whether remove.bg's endpoint takes it too.
``Options.contract()`` lists it (``OptionSpec``); the API's serializers and its schema, the
remove.bg endpoint's parameter list, ``GET /api/v1/options`` and through it the web page's form
are all derived from it, so a new option is one field here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from removal.pipeline import encode, trim
from removal.pipeline.errors import InvalidOption

__all__ = ["FORMATS", "CHANNELS", "InvalidOption", "OptionSpec", "Options"]

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


def _choice(name: str, value, choices: tuple[str, ...], aliases: dict[str, str]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    text = aliases.get(text, text)
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


def percent_or_pixels(text: str, extent: int) -> int:
    """A normalised length (``"40"`` or ``"10%"``) in pixels of ``extent``."""
    if text.endswith("%"):
        return int(round(extent * float(text[:-1]) / 100))
    return int(text)


@dataclass(frozen=True)
class OptionSpec:
    """One output option as the API documents it: a field of ``Options`` and its metadata."""

    name: str
    type: str  # "choice", "boolean", "integer" or "string"
    default: object
    help: str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    removebg: bool = True  # POST /v1.0/removebg takes it too (its own defaults apply there)

    def to_dict(self) -> dict:
        return asdict(self)


_TYPES = {"bool": "boolean", "int": "integer"}


def _option(default, help: str, *, choices: tuple[str, ...] | None = None,
            aliases: dict[str, str] | None = None, limits: tuple[int, int] | None = None,
            parse: Callable | None = None, removebg: bool = True):
    """A field of ``Options`` with its contract: ``choices`` (and ``aliases`` taken for one),
    ``limits`` of an integer, ``parse`` for a string option (normalises it, raises
    ``InvalidOption``), and whether the remove.bg endpoint takes it."""
    return field(default=default, metadata={
        "help": help, "choices": choices, "aliases": aliases or {}, "limits": limits,
        "parse": parse, "removebg": removebg,
    })


def _kind(spec) -> str:
    """``choice``, ``boolean``, ``integer`` or ``string``: from the metadata and the type."""
    return "choice" if spec.metadata["choices"] else _TYPES.get(str(spec.type), "string")


def _parse_field(spec, value):
    """One option's value, validated as its field's metadata says."""
    meta, name, kind = spec.metadata, spec.name, _kind(spec)
    if kind == "choice":
        return _choice(name, value, meta["choices"], meta["aliases"])
    if kind == "boolean":
        return _bool(name, value)
    if kind == "integer":
        return _int(name, value, *meta["limits"])
    return meta["parse"](value)


@dataclass
class Options:
    """Output options of one task. Build from user input with ``Options.parse``; each field's
    metadata is its contract (``Options.contract()``)."""

    format: str = _option(
        "png", "Output format: png (default), webp, jpg, zip (color.jpg + alpha.png) or auto "
               "(jpg when opaque, else png).",
        choices=FORMATS, aliases={"jpeg": "jpg"})
    size: str = _option(
        "full", "Result size: full (default, the original), preview/small/regular (0.25 MP), "
                "medium (1.5 MP), hd (4 MP).",
        choices=tuple(SIZES))
    channels: str = _option("rgba", "rgba (default): the cut-out; alpha: the mask only.",
                            choices=CHANNELS)
    bg_color: str | None = _option(
        None, "Colour to fill the background instead of transparency: hex of 3, 4, 6 or 8 "
              "digits (alpha last, e.g. #81d4fa77) or a colour name (green).",
        parse=_bg_color)
    crop: bool = _option(True, "Trim transparent margins (default true).")
    crop_margin: str = _option(
        "10", f"Padding kept when trimming: pixels (default 10, e.g. 10px, at most "
              f"{MAX_MARGIN_PX}) or a percentage like 5% (at most {MAX_MARGIN_PERCENT}%); two or "
              "four values in CSS order for different sides.",
        parse=_crop_margin)
    refine: bool = _option(True, "Morphological clean-up of the mask edges (default true).",
                           removebg=False)
    alpha_matting: bool = _option(False, "rembg's alpha matting for fine edges (slow; default "
                                         "false).", removebg=False)
    alpha_matting_foreground_threshold: int = _option(
        240, "Alpha matting: foreground threshold (default 240).", limits=(0, 255),
        removebg=False)
    alpha_matting_background_threshold: int = _option(
        10, "Alpha matting: background threshold (default 10).", limits=(0, 255),
        removebg=False)
    alpha_matting_erode_size: int = _option(
        10, "Alpha matting: erode size (default 10).", limits=(0, 100), removebg=False)
    roi: str | None = _option(
        None, "Region of interest 'x1 y1 x2 y2' (px or %): only the subject inside it is kept.",
        parse=_roi)
    scale: str = _option("original", "Subject size relative to the canvas: original (default) "
                                     "or 10%-100%.", parse=_scale)
    position: str = _option(
        "original", "Subject position: original (default), center, or 'H% V%' (one value: "
                    "both); scaling alone implies center.",
        parse=_position)
    semitransparency: bool = _option(
        True, "Keep semi-transparent areas (default true); false: opaque inside.")
    add_shadow: bool = _option(False, "A soft contact shadow under the subject (default false).")
    decontaminate: bool = _option(
        True, "Estimate the subject's own colour where the edge is semi-transparent, so no "
              "fringe of the old background shows on a new one (default true; false keeps the "
              "photo's colours). Not used for channels=alpha.")

    @classmethod
    def parse(cls, raw: dict | None) -> Options:
        """Validate user input (JSON or form strings). Keys that are not options are ignored;
        ``None``, ``""`` and ``"undefined"`` mean "not given"; a bad value raises
        ``InvalidOption``."""
        raw = {k: v for k, v in (raw or {}).items() if not _unset(v)}
        options = cls(**{spec.name: _parse_field(spec, raw.get(spec.name, spec.default))
                         for spec in fields(cls)})
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
    def names(cls, *, removebg: bool = False) -> list[str]:
        """Every option's name; ``removebg=True``: those the remove.bg endpoint takes."""
        return [f.name for f in fields(cls) if f.metadata["removebg"] or not removebg]

    @classmethod
    def contract(cls) -> list[OptionSpec]:
        """Every option with its type, choices, limits, default and help, in field order."""
        return [_spec(f) for f in fields(cls)]


def _spec(option) -> OptionSpec:
    meta = option.metadata
    low, high = meta["limits"] or (None, None)
    return OptionSpec(name=option.name, type=_kind(option), default=option.default,
                      help=meta["help"], choices=meta["choices"], minimum=low, maximum=high,
                      removebg=meta["removebg"])
