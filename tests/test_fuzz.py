"""Fuzzing (issue 6, section 7): hostile input gets a clean 4xx or a clean reject, never a crash.

* schemathesis generates requests from the served OpenAPI schema (``/api/v1/schema``) and sends
  them, with a real JWT, through the Django WSGI application in this process. Every response
  must be below 500.
* hypothesis mutates real images (bit flips, truncation, edits of the header bytes) and feeds
  them to the validator (``inspect`` + ``decode``) and to ``POST /api/v1/uploads``: each input
  is either accepted with sane dimensions or rejected with a message; nothing else may happen.

Both are bounded (a fixed number of examples, no deadline) so the file runs in CI in about a
minute.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from werkzeug.test import Client

from removal.api.errors import status_for
from removal.models import Task, Upload
from removal.pipeline.validate import (
    SUPPORTED_FORMATS,
    Decoded,
    ImageInfo,
    InvalidImage,
    Limits,
    decode,
    inspect,
)
from tests.factories import PASSWORD, make_task, make_user
from tests.images import FIXTURES, make_image

# --- schemathesis: the whole API, authenticated ------------------------------------------------

API_EXAMPLES = 25


WSGI_APP = get_wsgi_application()
# Loaded once, at collection, from the schema the application serves. (Not through
# ``schemathesis.pytest.from_fixture``: its lazy loader uses ``Item._nodeid``, gone in pytest 9.)
with override_settings(ALLOWED_HOSTS=["localhost"]):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema", WSGI_APP)


@pytest.fixture
def bearer(transactional_db, settings) -> dict[str, str]:
    """A user with one task of their own (so lists serialize a row), and their access token.

    ``transactional_db``: the WSGI handler closes the connection after each request like a
    server does, which a test wrapped in a transaction would not survive; here every request
    commits for real and the on-commit enqueue runs."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    user = make_user()
    make_task(owner=user)
    response = Client(WSGI_APP).post(
        "/api/v1/auth/token", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access']}"}


@pytest.fixture
def loopback_only(monkeypatch):
    """URLs the fuzzer invents (``image_url``, ``webhook_url``) never leave the machine: host
    names are not looked up (numeric addresses only), and removal.fetch opens no connection
    to a non-loopback address (it already refuses loopback ones that are not allowlisted)."""
    import ipaddress
    import socket

    import httpcore

    from removal import fetch

    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host, port, family=0, type=0, proto=0, flags=0):
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    real_connect = fetch._PinnedBackend.connect_tcp

    def loopback_connect(self, host, port, *args, **kwargs):
        if not ipaddress.ip_address(self._ip).is_loopback:
            raise httpcore.ConnectError("tests reach loopback addresses only")
        return real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    monkeypatch.setattr(fetch._PinnedBackend, "connect_tcp", loopback_connect)


@schema.parametrize()
@settings(max_examples=API_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api_never_answers_5xx(case, bearer, loopback_only):
    # A 5xx, a response body off its documented schema or a wrong content type fail. Not
    # checked: status_code_conformance (the schema documents no 4xx at all) and
    # negative_data_rejection (``page_size=null`` is ignored rather than refused).
    case.call_and_validate(
        headers=bearer,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )


def test_schema_documents_the_upload_body():
    """The fuzzer sends only what the schema describes: if the upload's multipart body is not
    documented, no generated request ever carries a file."""
    operation = schema.raw_schema["paths"]["/api/v1/uploads"]["post"]
    assert "202" in operation["responses"], f"documented: {sorted(operation['responses'])}"
    body = operation.get("requestBody", {}).get("content", {})
    assert "multipart/form-data" in body, "POST /api/v1/uploads documents no multipart body"
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = schema.raw_schema["components"]["schemas"][ref]["properties"]
    assert properties["file"]["format"] == "binary"


# --- hypothesis: mutated real images against the validator -------------------------------------

LIMITS = Limits()


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


def _within_limits(width: int, height: int) -> bool:
    return all(LIMITS.min_dimension <= side <= LIMITS.max_dimension for side in (width, height))


def _check_rejection(exc: InvalidImage) -> None:
    assert str(exc).strip(), "an InvalidImage without a message"
    assert 400 <= status_for(exc) < 500  # what the API answers for it


def _check_info(info: ImageInfo, data: bytes) -> None:
    assert info.format in SUPPORTED_FORMATS
    assert _within_limits(info.width, info.height)
    assert info.byte_size == len(data)


def _check_decoded(decoded: Decoded, info: ImageInfo) -> None:
    rgb = decoded.rgb
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
    assert rgb.shape[2] == 3 and rgb.flags.c_contiguous
    # EXIF orientation may swap the sides, never change them.
    assert sorted(rgb.shape[:2]) == sorted((info.height, info.width))
    assert decoded.format == info.format
    if decoded.alpha is not None:
        assert decoded.alpha.dtype == np.uint8 and decoded.alpha.shape == rgb.shape[:2]


def test_every_seed_image_is_accepted():
    """The mutations start from valid images: otherwise the fuzzer would test nothing."""
    for name, data in SEEDS.items():
        info = inspect(data, LIMITS)
        _check_info(info, data)
        _check_decoded(decode(data, LIMITS), info)
        assert decode(data, LIMITS).format == name.rsplit(".", 1)[-1].upper().replace("JPG", "JPEG")


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL")  # Pillow's notes on corrupt EXIF
@settings(max_examples=200, deadline=None)
@given(mutated_images())
def test_mutated_images_are_cleanly_accepted_or_rejected(sample):
    _, data = sample
    try:
        info = inspect(data, LIMITS)
    except InvalidImage as exc:
        _check_rejection(exc)
        event(f"inspect rejects: {str(exc)[:40]}")
        # What the header check refuses, decoding refuses as well (decode validates first).
        with pytest.raises(InvalidImage) as decode_error:
            decode(data, LIMITS)
        _check_rejection(decode_error.value)
        return
    _check_info(info, data)
    try:
        decoded = decode(data, LIMITS)
    except InvalidImage as exc:  # a header that parses over a body that does not
        _check_rejection(exc)
        event(f"decode rejects: {str(exc)[:40]}")
        return
    _check_decoded(decoded, info)
    event("accepted")


# --- the same mutated images through the upload API --------------------------------------------


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL")
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sample=mutated_images())
def test_mutated_uploads_get_202_or_a_clean_4xx(db, client_for, sample):
    name, data = sample
    user = make_user()  # one per example: the per-user cap on queued tasks is not under test
    client = client_for(user)
    before = Upload.objects.count()
    response = client.post(
        "/api/v1/uploads", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    event(f"HTTP {response.status_code}")
    if response.status_code == 202:
        assert Task.objects.filter(pk=response.json()["task_id"], upload__owner=user).exists()
        assert Upload.objects.count() == before + 1
    else:
        assert response.status_code in (400, 413, 415), (response.status_code, response.content)
        assert response.json()["detail"].strip()
        assert Upload.objects.count() == before
