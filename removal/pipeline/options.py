"""The output options of a task: the API's input contract, parsed in one place.

``Options.parse(raw)`` turns user input (JSON values or form strings) into a validated
``Options``; a bad value raises ``InvalidOption`` naming the field. The API's serializer, the
task runner and the ``removebg`` command all parse with it. Which model runs is not an output
option: it is the task's own ``model`` field.

Option names follow the remove.bg API where it has one (``format``, ``channels``, ``bg_color``,
``crop``, ``crop_margin``); the alpha-matting ones are rembg's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from removal.pipeline import encode, trim
from removal.pipeline.errors import InvalidOption

__all__ = ["FORMATS", "CHANNELS", "InvalidOption", "Options"]

FORMATS = ("png", "webp")
CHANNELS = ("rgba", "alpha")
MAX_MARGIN_PX = 500
MAX_MARGIN_PERCENT = 50
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


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
        """Validate user input (JSON or form strings). Keys that are not options are ignored;
        ``None`` and ``""`` mean "not given"; a bad value raises ``InvalidOption``."""
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

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
