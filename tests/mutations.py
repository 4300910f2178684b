"""Hostile variants of real images for hypothesis: bit flips (in the header and spread over the
body), truncation and edits of the header bytes, applied to valid seed images."""

from __future__ import annotations

import io
from dataclasses import dataclass

from hypothesis import strategies as st
from PIL import Image

from tests.images import FIXTURES, make_image


def _reencode(name: str, fmt: str, width: int = 160) -> bytes:
    """A real photo from the shared fixtures, scaled down and saved in another format."""
    with Image.open(FIXTURES / name) as image:
        image = image.convert("RGB")
        image.thumbnail((width, width))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def _progressive(name: str) -> bytes:
    buffer = io.BytesIO()
    with Image.open(FIXTURES / name) as image:
        image.save(buffer, format="JPEG", progressive=True, quality=80)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    """Valid images to mutate: the real photos, re-encoded into the other accepted formats, plus
    the colour modes that take other decoding paths (alpha, CMYK, 16-bit grey)."""
    seeds = {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.jpg"))}
    for fmt in ("PNG", "WEBP", "BMP"):
        seeds[f"girl-1.{fmt.lower()}"] = _reencode("girl-1.jpg", fmt)
    seeds["car-1.progressive.jpg"] = _progressive("car-1.jpg")
    seeds["rgba.png"] = make_image("PNG", size=(64, 64), color=(10, 200, 30, 128), mode="RGBA")
    seeds["cmyk.jpg"] = make_image("JPEG", size=(64, 64), color=(0, 80, 160, 20), mode="CMYK")
    seeds["grey16.png"] = make_image("PNG", size=(64, 64), color=40000, mode="I;16")
    return seeds


SEEDS = _seeds()
HEADER = 64


@dataclass(frozen=True)
class BitFlip:
    offset: int
    bit: int

    def apply(self, data: bytearray) -> None:
        if data:
            data[self.offset % len(data)] ^= 1 << self.bit


@dataclass(frozen=True)
class BodyBitFlip:
    """A bit flip past the header, at a relative position (so it spreads over the body)."""

    position: float
    bit: int

    def apply(self, data: bytearray) -> None:
        if len(data) > HEADER:
            data[HEADER + int((len(data) - HEADER) * self.position)] ^= 1 << self.bit


@dataclass(frozen=True)
class Truncate:
    fraction: float

    def apply(self, data: bytearray) -> None:
        del data[int(len(data) * self.fraction):]


@dataclass(frozen=True)
class HeaderEdit:
    offset: int
    payload: bytes

    def apply(self, data: bytearray) -> None:
        start = min(self.offset, len(data))
        data[start:start + len(self.payload)] = self.payload


body_flips = st.builds(BodyBitFlip, position=st.floats(0, 1, exclude_max=True),
                       bit=st.integers(0, 7))
mutations = st.one_of(
    body_flips,
    body_flips,  # twice: most mutations should leave the header intact and reach the decoder
    st.builds(Truncate, fraction=st.floats(0, 1, exclude_max=True)),
    st.builds(BitFlip, offset=st.integers(0, HEADER - 1), bit=st.integers(0, 7)),
    st.builds(HeaderEdit, offset=st.integers(0, HEADER - 1),
              payload=st.sampled_from([b"\x00", b"\xff", b"\xff\xff", b"\x7f\xff\xff\xff"])
              | st.binary(min_size=1, max_size=8)),
)


@st.composite
def mutated_images(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for mutation in draw(st.lists(mutations, min_size=1, max_size=3)):
        mutation.apply(data)
    return name, bytes(data)
