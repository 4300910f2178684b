"""Fuzzing the validator (issue 6, section 7): hypothesis mutates real images (tests/mutations.py)
and feeds them to inspect and decode; each input is either accepted with sane dimensions or
rejected with a message a user can act on, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings

from removal.api.errors import status_for
from removal.pipeline.validate import (
    SUPPORTED_FORMATS,
    Decoded,
    ImageInfo,
    InvalidImage,
    Limits,
    decode,
    inspect,
)
from tests.mutations import SEEDS, mutated_images

LIMITS = Limits()


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
