"""Hostile and odd inputs through the public API (and, for what the API accepts, a real worker).

Every file is generated here. Rejected uploads: a clear 4xx, no rows, nothing queued. Accepted
ones: the worker ends the task ``completed`` - or ``failed`` with a message and no retry - and
the stored result carries nothing of the input but pixels (no EXIF/GPS, no appended payload).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from removal.models import Task, Upload
from tests.helpers import named
from tests.images import fixture_bytes

pytestmark = pytest.mark.django_db



def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(size=(320, 240)) -> Image.Image:
    return Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").resize(size)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny IDAT: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def animated(fmt: str, frames: int = 60) -> bytes:
    # Frames with a subject: a blank frame is (rightly) "No foreground found in the image".
    car = photo((120, 90))
    images = [Image.blend(car, Image.new("RGB", car.size, (n * 4 % 256, 0, 0)), 0.2)
              for n in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=20)


def exactly(size: int) -> bytes:
    """A valid JPEG padded with trailing bytes to exactly ``size`` bytes."""
    base = encode(photo((200, 150)), "JPEG")
    return base + b"\0" * (size - len(base))


SUPPORTED = "Supported formats: JPEG, PNG, WEBP, BMP"
NOISY_PNG = encode(Image.effect_noise((400, 300), 80).convert("RGB"), "PNG")
NOISY_JPEG = encode(Image.effect_noise((400, 300), 80).convert("RGB"), "JPEG")


def corrupt_idat(png: bytes) -> bytes:
    """Zero out the middle of the compressed pixel data, fixing nothing (the CRC now fails)."""
    start = png.index(b"IDAT") + 4 + 200
    return png[:start] + b"\0" * 400 + png[start + 400:]
MB10 = 10 * 1024 * 1024

REJECTED = {
    "zero-bytes": (b"", "x.jpg", "The uploaded file is empty"),
    "png-50000x50000": (png_declaring(50_000, 50_000), "bomb.png", "Image dimensions too large"),
    "animated-gif": (animated("GIF"), "anim.gif", "Unsupported image format: GIF"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
            b'<script>alert(1)</script></svg>', "x.svg", SUPPORTED),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "x.pdf", SUPPORTED),
    "tiff": (encode(photo(), "TIFF"), "x.tiff", f"Unsupported image format: TIFF. {SUPPORTED}"),
    # Refused at upload (400), not accepted and failed later: the pixel data is checked to the end.
    "truncated-png": (NOISY_PNG[: len(NOISY_PNG) // 2], "cut.png",
                      "The image file is truncated or corrupt"),
    "truncated-jpeg": (NOISY_JPEG[: len(NOISY_JPEG) * 3 // 4], "cut.jpg",
                       "The image file is truncated or corrupt"),
    "corrupt-png-idat": (corrupt_idat(NOISY_PNG), "bad.png",
                         "The image file is truncated or corrupt"),
    "one-over-10MB": (exactly(MB10 + 1), "big.jpg", "File size (10.0MB) exceeds maximum (10MB)"),
    "4097-wide": (encode(Image.new("L", (4097, 60)), "PNG"), "w.png",
                  "Image dimensions too large (max 4096x4096)"),
    "49-high": (encode(Image.new("RGB", (60, 49)), "PNG"), "h.png",
                "Image dimensions too small (min 50x50)"),
}


@pytest.mark.parametrize("case", REJECTED)
def test_hostile_upload_is_refused_cleanly(case, user, client_for, empty_queue):
    data, name, message = REJECTED[case]
    response = client_for(user).post("/api/v1/uploads", {"file": named(data, name)},
                                     format="multipart")
    assert 400 <= response.status_code < 500, response.content
    assert message in response.json()["detail"]
    assert Upload.objects.count() == 0 and Task.objects.count() == 0 and empty_queue.count == 0


@pytest.mark.parametrize(
    ("data", "name"),
    [(exactly(MB10), "exact.jpg"), (encode(Image.new("L", (4096, 50)), "PNG"), "max.png"),
     (encode(Image.new("RGB", (50, 50)), "PNG"), "min.png")],
    ids=["exactly-10MB", "4096-wide", "50x50"],
)
def test_inputs_exactly_at_each_limit_are_accepted(data, name, user, client_for):
    response = client_for(user).post("/api/v1/uploads", {"file": named(data, name)},
                                     format="multipart")
    assert response.status_code == 202, response.content


def jpeg_with_exif_and_gps(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS
    wide = Image.new("RGB", (300, 120), (240, 240, 240))
    wide.paste(photo((200, 100)), (50, 10))
    return encode(wide, "JPEG", exif=exif.tobytes())


def accepted_inputs() -> dict[str, tuple[bytes, str]]:
    base = photo()
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE)
    return {
        "jpeg-named-png": (encode(base, "JPEG"), "really-a-jpeg.png"),
        "html-polyglot-jpeg": (encode(base, "JPEG", comment=b"<script>alert(1)</script>")
                               + b"<html><script>alert(document.cookie)</script></html>",
                               "poly.jpg"),
        "png-with-zip": (encode(base, "PNG") + b"PK\x03\x04" + b"\0" * 26 + b"secret.txt",
                         "zip.png"),
        "cmyk": (encode(base.convert("CMYK"), "JPEG"), "cmyk.jpg"),
        "16-bit-grey": (encode(Image.fromarray(
            np.asarray(base.convert("L"), dtype=np.uint16) * 257), "PNG"), "grey16.png"),
        "palette-transparency": (encode(palette, "PNG", transparency=0), "pal.png"),
        "animated-webp": (animated("WEBP"), "anim.webp"),
        "exif-orientation-6": (jpeg_with_exif_and_gps(6), "rotated.jpg"),
    }


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_accepted_odd_inputs_never_break_the_worker(user, client_for, run_worker, settings):
    settings.QUICKBG_MAX_QUEUED_TASKS = 50
    client = client_for(user)
    tasks = {}
    for case, (data, name) in accepted_inputs().items():
        response = client.post("/api/v1/uploads", {"file": named(data, name), "crop": "false"},
                               format="multipart")
        assert response.status_code == 202, (case, response.content)
        tasks[case] = response.json()["task_id"]

    run_worker()

    from removal import storage

    outcomes = {case: Task.objects.get(pk=task_id) for case, task_id in tasks.items()}
    for case, task in outcomes.items():
        assert task.status in (Task.Status.COMPLETED, Task.Status.FAILED), case
        assert task.attempts == 1, case  # bad input is never retried
    for case, task in outcomes.items():
        assert task.status == Task.Status.COMPLETED, (case, task.error_message)
        result = storage.read(task.result_key)
        assert b"<script" not in result and b"PK\x03\x04" not in result, case
        image = Image.open(io.BytesIO(result))
        assert image.format == "PNG" and image.mode == "RGBA", case
        assert not image.getexif(), case  # no EXIF, so no GPS
    rotated = Image.open(io.BytesIO(storage.read(outcomes["exif-orientation-6"].result_key)))
    assert rotated.size == (120, 300)  # orientation 6 applied: upright, portrait
    assert Upload.objects.get(pk=outcomes["jpeg-named-png"].upload_id).format == "JPEG"
