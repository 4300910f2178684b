"""Hostile inputs against their stated bounds: peak memory for hostile zips, wall time for peers
that trickle bytes. Run: ``.venv/bin/python bench/hostile.py``.

Zips go through ``removal.pipeline.archive.read_zip`` with the default batch limits (100 files,
200 MB in all, 10 MB per member, ratio 100); the bound printed beside each is the one the README's
Security section states: about twice the member limit plus the index. Python's own allocator is
measured (``tracemalloc``: zlib/bz2/lzma buffers are Python objects), so each row is that input's
peak alone. For comparison the last zip row inflates the bzip2 member the way ``zipfile`` does
(one ``read`` of 64 KiB compressed), which is what read_zip refuses to do.

The fetch rows start a loopback server that sends one byte every 50 ms (always within any per-read
timeout) and time ``removal.fetch`` against a 2 s limit: the ratio to the limit is the figure.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401 - puts the project root on sys.path

MB = 1024 * 1024


def _declare(data: bytes, declared: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into("<I", patched, patched.find(b"PK\x03\x04") + 22, declared)
    struct.pack_into("<I", patched, patched.find(b"PK\x01\x02") + 24, declared)
    return bytes(patched)


def _zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def hostile_zips() -> list[tuple[str, bytes]]:
    bz = _zip({"photo.png": b"\0" * (300 * MB)}, zipfile.ZIP_BZIP2)
    small = zipfile.ZipFile(io.BytesIO(bz)).infolist()[0].compress_size
    many = _zip({f"{n}.png": b"x" for n in range(200_000)}, zipfile.ZIP_STORED)
    # Within the member limit: the header lies about a 50 MB member.
    liar = _declare(_zip({"big.png": b"\0" * (50 * MB)}), 9 * MB)
    return [
        (f"bzip2 member, {small} B declared as {small * 100} B, inflates to 300 MB",
         _declare(bz, small * 100)),
        ("200,000 entries (a 9 MB index)", many),
        ("deflate member of 50 MB, header says 9 MB", liar),
        ("honest: 10 deflate members of 1 MB noise", _zip(
            {f"{n}.png": b"\x89PNG" + os.urandom(MB) for n in range(10)})),
    ]


def measure_zip(data: bytes) -> tuple[str, int, float]:
    from removal.errors import InvalidInput
    from removal.pipeline.archive import ZipLimits, read_zip

    limits = ZipLimits(max_members=100, max_total_bytes=200 * MB, max_member_bytes=10 * MB,
                       max_ratio=100)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        outcome = []
        for member in read_zip(io.BytesIO(data), limits):
            outcome.append("ok" if member.data is not None else member.error.split(";")[0])
            del member
        result = ", ".join(sorted(set(outcome)))[:70]
    except InvalidInput as exc:
        result = exc.detail[:70]
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, peak, time.perf_counter() - started


def unbounded_bzip2_read(data: bytes) -> int:
    """What one 64 KiB read of that member costs without read_zip's refusal."""
    tracemalloc.start()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.infolist()[0]
            info.file_size = 400 * MB  # as if the header were honest about it
            with archive.open(info) as stream:
                stream.read(64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def fetch_rows() -> list[tuple[str, float]]:
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickbg.settings")
    os.environ.setdefault("DEBUG", "true")
    django.setup()
    from removal import fetch
    from tests.helpers import TricklingServer

    rows = []
    limit = 2.0
    answers = {
        "image_url, headers trickled": ("get", b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 4000),
        "image_url, body trickled": ("get", b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"
                                     + b"\x89PNG" * 1000),
        "webhook, answer trickled": ("post", b"HTTP/1.1 200 OK\r\nX-Pad: " + b"b" * 4000),
    }
    for name, (method, answer) in answers.items():
        with TricklingServer(answer, interval=0.05, lasting=30) as server:
            settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
            settings.QUICKBG_FETCH_TIMEOUT = limit
            started = time.monotonic()
            try:
                if method == "get":
                    fetch.fetch_bytes(server.url("/img"), max_bytes=10 * MB)
                else:
                    fetch.post(server.url("/hook"), content=b"{}", headers={}, timeout=limit)
            except fetch.FetchRefused:
                pass
            rows.append((name, time.monotonic() - started))
    return rows, limit


def main() -> None:
    bound = 2 * 10 * MB + 2 * 100 * 1024 + 2 * 64 * 1024
    print(f"Hostile zips (stated bound: 2 x 10 MB member limit + index = {bound / MB:.1f} MB)")
    print(f"{'input':58} {'peak MB':>8} {'s':>6}  outcome")
    zips = hostile_zips()
    for name, data in zips:
        result, peak, seconds = measure_zip(data)
        print(f"{name:58} {peak / MB:8.2f} {seconds:6.2f}  {result}")
    print(f"{'  for comparison: zipfile reading that bzip2 member once':58} "
          f"{unbounded_bzip2_read(zips[0][1]) / MB:8.2f}")
    rows, limit = fetch_rows()
    print(f"\nPeers sending one byte every 50 ms (limit {limit:g} s for the whole exchange)")
    print(f"{'exchange':30} {'took s':>7} {'ratio':>6}")
    for name, seconds in rows:
        print(f"{name:30} {seconds:7.2f} {seconds / limit:6.2f}")


if __name__ == "__main__":
    main()
