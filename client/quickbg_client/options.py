"""The output options the API takes (``removal/pipeline/options.py`` on the server) and how
the CLI spells them. The server validates every value; the client only passes them on."""

from __future__ import annotations

# name -> help, in the server's order. Booleans are sent as "true"/"false".
OPTIONS: dict[str, str] = {
    "format": "png (default), webp, jpg, zip (color.jpg + alpha.png) or auto (jpg when opaque)",
    "size": "full (default), preview/small/regular (0.25 MP), medium (1.5 MP), hd (4 MP), "
            "4k/auto/50mp (the original)",
    "channels": "rgba (default) or alpha (the mask only)",
    "bg_color": "hex colour (e.g. ffffff) filling the background instead of transparency",
    "crop": "trim transparent margins (default true)",
    "crop_margin": "padding kept when cropping: pixels (default 10) or a percentage like 5%%",
    "refine": "mask edge clean-up (default true)",
    "alpha_matting": "rembg's alpha matting for fine edges (slow; default false)",
    "alpha_matting_foreground_threshold": "alpha matting foreground threshold (default 240)",
    "alpha_matting_background_threshold": "alpha matting background threshold (default 10)",
    "alpha_matting_erode_size": "alpha matting erode size (default 10)",
    "roi": "region of interest 'x1 y1 x2 y2' in px or %%: only the subject inside is kept",
    "scale": "subject size on the canvas: original (default) or 10%%-100%%",
    "position": "subject position: original (default), center, or 'H%% V%%'",
    "semitransparency": "keep semi-transparent areas such as glass and veils (default true)",
    "add_shadow": "a soft contact shadow under the subject (default false)",
    "decontaminate": "the subject's own colour at soft edges, no halo of the old background "
                     "(default true)",
}
OPTION_NAMES = tuple(OPTIONS)
BOOLEAN_OPTIONS = ("crop", "refine", "alpha_matting", "semitransparency", "add_shadow",
                   "decontaminate")
# Result extension by Content-Type of the download (format=auto decides on the server).
EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg",
              "application/zip": "zip"}


def form_fields(options: dict[str, object]) -> dict[str, str]:
    """The options as multipart form fields (``None`` left out, booleans as true/false)."""
    fields: dict[str, str] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in OPTION_NAMES and name != "model":
            raise TypeError(f"unknown option {name!r}; options are: {', '.join(OPTION_NAMES)}, "
                            "model")
        fields[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return fields


def expected_extension(options: dict[str, object]) -> str | None:
    """The result's extension when the options fix it (``None`` for format=auto)."""
    fmt = str(options.get("format") or "png").lower()
    if fmt == "jpeg":
        fmt = "jpg"
    return None if fmt == "auto" else fmt
