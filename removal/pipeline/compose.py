"""Turn an image and its mask into the stored result."""

from __future__ import annotations

import io

from PIL import Image


def cutout(image: Image.Image, mask: Image.Image) -> Image.Image:
    """RGBA image whose alpha is the mask."""
    result = image.convert("RGB").copy()
    result.putalpha(mask)
    return result


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
