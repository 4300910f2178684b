"""Hostile zips meet ``removal.pipeline.archive``: bombs, liars, nesting, encryption, names."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest

from removal.errors import InvalidInput
from removal.pipeline import archive as archive_mod
from removal.pipeline.archive import ZipLimits, read_zip, safe_member_name
from tests.images import make_image

LIMITS = ZipLimits(max_members=10, max_total_bytes=5 * 1024 * 1024,
                   max_member_bytes=2 * 1024 * 1024, max_ratio=100)


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def read_all(data: bytes, limits=LIMITS):
    return list(read_zip(io.BytesIO(data), limits))


def test_a_zip_bomb_is_refused_without_inflating(monkeypatch):
    bomb = zip_bytes({"bomb.png": b"\0" * (2 * 1024 * 1024 - 1)})
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, *a, **k: opened.append(a[0]) or real_open(self, *a, **k))
    [member] = read_all(bomb)
    assert member.data is None
    assert member.error == "Compression ratio over 100:1; refused unread (zip bomb?)"
    assert opened == []  # never inflated


def test_total_uncompressed_size_is_checked_before_reading():
    members = {f"{n}.png": b"\0" * (1024 * 1024) for n in range(6)}
    with pytest.raises(InvalidInput, match=r"The archive's contents \(6MB uncompressed\) exceed "
                                           r"the batch maximum \(5MB\)"):
        read_all(zip_bytes(members, zipfile.ZIP_STORED))


def test_too_many_members_is_refused():
    members = {f"{n}.png": b"x" for n in range(11)}
    with pytest.raises(InvalidInput, match=r"The archive holds 11 files \(maximum 10 per batch\)"):
        read_all(zip_bytes(members))


def test_a_member_lying_about_its_size_never_inflates_past_the_declared_size(monkeypatch):
    real = b"\0" * (1024 * 1024)
    data = bytearray(zip_bytes({"liar.png": real}))
    lie = 1000
    # Patch the uncompressed size in the local header (offset 22) and central directory (24).
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, lie)
    struct.pack_into("<I", data, central + 24, lie)
    produced = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        chunk = real_read(self, n)
        produced.append(len(chunk))
        return chunk

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    [member] = list(read_zip(io.BytesIO(bytes(data)), LIMITS))
    assert member.data is None
    assert member.error == "Could not read this member from the zip: bad CRC (damaged)"
    assert sum(produced) <= lie  # the megabyte behind the lie was never produced


def test_streaming_counter_stops_a_member_that_inflates_past_its_cap(monkeypatch):
    """Even if the zip library produced more than the header declares, reading stops."""
    data = zip_bytes({"a.png": b"\x89PNG" + os.urandom(5000)})

    class Endless(io.RawIOBase):
        def read(self, n=-1):
            return b"\2" * archive_mod.CHUNK

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: Endless())
    with pytest.raises(InvalidInput, match="lies about its sizes"):
        read_all(data)


def test_nested_archives_are_refused_by_name_and_by_content():
    inner = zip_bytes({"x.png": make_image("PNG", (60, 60))})
    members = read_all(zip_bytes({"inner.zip": inner, "disguised.png": inner,
                                  "photos.tar.gz": b"\x1f\x8b" + b"\0" * 100}))
    assert [(m.name, m.data) for m in members] == [
        ("inner.zip", None), ("disguised.png", None), ("photos.tar.gz", None)]
    assert all(m.error.startswith("Nested archives are not accepted") for m in members)


def test_encrypted_members_are_refused():
    data = bytearray(zip_bytes({"secret.png": make_image("PNG", (60, 60))}))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        flags = struct.unpack_from("<H", data, at + flag_offset)[0]
        struct.pack_into("<H", data, at + flag_offset, flags | 0x1)
    [member] = read_all(bytes(data))
    assert (member.data, member.error) == (None, "Encrypted zip members are not accepted")


def test_members_are_read_in_memory_with_safe_names():
    image = make_image("PNG", (60, 60))
    members = read_all(zip_bytes({"../../etc/passwd.png": image, "/abs/a.png": image,
                                  "C:\\win\\b.png": image, "dir/sub/": b"",
                                  "bad\x07\nname.png": image, "..": image}))
    assert [m.name for m in members] == ["passwd.png", "a.png", "b.png", "badname.png", "file-5"]
    assert all(m.data == image for m in members[:4])


@pytest.mark.parametrize(("raw", "expected"), [
    ("../../x.jpg", "x.jpg"), ("C:evil.jpg", "evil.jpg"), ("a\\b\\c.jpg", "c.jpg"),
    ("\x00\x1f.jpg", ".jpg"), ("...", "file-3"), ("", "file-3"), ("  ok.png ", "ok.png"),
])
def test_safe_member_name(raw, expected):
    assert safe_member_name(raw, 3) == expected


def test_not_a_zip_is_invalid_input():
    with pytest.raises(InvalidInput, match="The archive is not a valid zip file"):
        read_all(b"PK\x03\x04 truncated")


def _declare_size(data: bytes, declared: int) -> bytes:
    """The zip with its (single) member's uncompressed size rewritten in both headers."""
    patched = bytearray(data)
    struct.pack_into("<I", patched, patched.find(b"PK\x03\x04") + 22, declared)
    struct.pack_into("<I", patched, patched.find(b"PK\x01\x02") + 24, declared)
    return bytes(patched)


@pytest.mark.parametrize("method, name", [(zipfile.ZIP_BZIP2, "bzip2"),
                                          (zipfile.ZIP_LZMA, "LZMA")])
def test_bzip2_and_lzma_members_are_refused_unread_within_a_memory_bound(method, name):
    """zipfile inflates a bzip2/LZMA read with no output cap: 64 MB from a few hundred bytes,
    declared within the ratio check. Refused before any inflating; peak memory stays small."""
    import tracemalloc

    inflated = 64 * 1024 * 1024
    packed = zip_bytes({"photo.png": b"\0" * inflated}, method)
    compressed = zipfile.ZipFile(io.BytesIO(packed)).infolist()[0].compress_size
    hostile = _declare_size(packed, compressed * 50)  # "honest" ratio 50:1, under the 100 cap
    limits = ZipLimits(max_members=10, max_total_bytes=5 * 1024 * 1024,
                       max_member_bytes=2 * 1024 * 1024, max_ratio=100)
    tracemalloc.start()
    try:
        [member] = read_all(hostile, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert member.data is None
    assert member.error == (f"Compressed with {name}; only stored and deflate members are "
                            "accepted (zip it again with your tool's default compression)")
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


def test_a_deflate_member_is_read_within_the_stated_memory_bound():
    """The README's bound: twice the member limit (joined bytes), plus a chunk."""
    import tracemalloc

    content = b"\x89PNG" + os.urandom(1024 * 1024) + b"\0" * (900 * 1024)
    data = zip_bytes({"big.png": content})
    tracemalloc.start()
    try:
        [member] = read_all(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert member.data == content
    assert peak < 2 * LIMITS.max_member_bytes + 2 * archive_mod.CHUNK + 512 * 1024


def _count_index_parses(monkeypatch) -> list:
    parsed = []
    real = zipfile.ZipFile._RealGetContents
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents",
                        lambda self: parsed.append(1) or real(self))
    return parsed


def test_an_index_with_too_many_entries_is_refused_before_it_is_parsed(monkeypatch):
    data = zip_bytes({f"{n}.png": b"x" for n in range(21)}, zipfile.ZIP_STORED)
    parsed = _count_index_parses(monkeypatch)
    with pytest.raises(InvalidInput, match=r"The archive holds 21 entries \(maximum 10 files "
                                           r"per batch\); refused before reading its index"):
        read_all(data)
    assert parsed == []


def test_an_end_record_that_understates_its_entries_is_caught_by_the_index_size(monkeypatch):
    data = bytearray(zip_bytes({f"{n:04d}" + "x" * 2000 + ".png": b"x" for n in range(15)},
                               zipfile.ZIP_STORED))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "one entry", over an index of fifteen
    parsed = _count_index_parses(monkeypatch)
    with pytest.raises(InvalidInput, match=r"The archive's index takes [\d,]+ bytes, too "
                                           r"large for 10 files"):
        read_all(bytes(data))
    assert parsed == []
