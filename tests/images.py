"""Images made by the tests themselves, plus the shared real photos."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_image(fmt: str = "JPEG", size=(120, 90), color=(200, 30, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def soft_disc_photo(size=(300, 300), color=(200, 40, 40), radius=0.3, rim=0.08) -> bytes:
    """A PNG of a ``color`` disc whose rim fades into white over ``rim`` of the width: the
    photo that ``DiscModel(radius=0.3, edge=0.08)`` cuts out along its soft edge."""
    import numpy as np

    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot(xx + 0.5 - width / 2, yy + 0.5 - height / 2)
    alpha = np.clip((radius * width - distance) / (rim * width) + 0.5, 0, 1)[:, :, None]
    pixels = np.round(alpha * np.array(color) + (1 - alpha) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
