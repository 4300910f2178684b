"""Read the images out of an uploaded zip without trusting it. Plain Python, no Django.

Python's ``zipfile`` (no extra dependency: it reads member by member as a stream, and it is the
reference implementation of the format) does the parsing; this module puts limits around it:

- **Before parsing the central directory**, from the end record alone (the last bytes of the
  file): the entry count (at most ``2 * max_members``, folders included) and the directory's
  size (at most ``CENTRAL_ENTRY_BYTES`` per allowed entry), so a 200,000-entry index is refused
  without being read.
- **Before inflating anything**, from the central directory: the member count
  (``max_members``), the total uncompressed size (``max_total_bytes``), and per member the
  compression method (``stored`` and ``deflate`` only, see below), the declared size
  (``max_member_bytes``, the single-upload limit) and compression ratio (``max_ratio``). A zip
  bomb is refused here, unread.
- **While streaming**, the same limits are counted on the bytes really produced, so a member
  whose header lies about its size cannot inflate past them (reading stops at the limit).
- **Nested archives** (zip, gzip, 7z, rar, tar, bzip2, xz by content or by name) and encrypted
  members are refused.
- **Names** are never used as paths: ``safe_member_name`` keeps only the base name, without
  drive letters or control characters, and the bytes stay in memory (one member at a time).

Why only stored and deflate: they are what every zip tool writes by default, and ``zipfile``
inflates a deflate member at most ``CHUNK`` bytes per read. For bzip2 and LZMA it inflates a
whole read with no output limit (a 242-byte member became 300 MB in one read), so those members
are refused unread. **Peak memory** for any archive, hostile or not: the central directory (at
most ``2 * max_members * CENTRAL_ENTRY_BYTES``) plus one member's bytes twice over while they
are joined (at most ``2 * max_member_bytes``: 20 MB with the default 10 MB limit), plus one
chunk.

A problem with one member rejects that member (``Member.error``, shown to the user); a problem
with the archive as a whole raises ``InvalidInput``.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from removal.errors import InvalidInput

CHUNK = 64 * 1024
# What a central-directory entry may take on average: 46 fixed bytes, a name and its extras.
CENTRAL_ENTRY_BYTES = 1024
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64"}
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".zst", ".jar")
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!",
                 b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
NESTED = "Nested archives are not accepted; put the images in the zip itself"


@dataclass(frozen=True)
class ZipLimits:
    max_members: int
    max_total_bytes: int
    max_member_bytes: int
    max_ratio: int


@dataclass(frozen=True)
class Member:
    """One file of the archive: its safe name, and either its bytes or why it was rejected."""

    name: str
    data: bytes | None = None
    error: str | None = None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


def safe_member_name(raw: str, index: int) -> str:
    """The base name of ``raw`` with no directory, drive letter or control character; a
    neutral ``file-<index>`` when nothing usable is left. For display and result names only."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        name = name[2:]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", "..") or set(name) == {"."}:
        return f"file-{index}"
    return name[:255]


def looks_like_archive(name: str, head: bytes) -> bool:
    lower = name.lower()
    return lower.endswith(ARCHIVE_SUFFIXES) or head.startswith(ARCHIVE_MAGIC) or (
        len(head) > 262 and head[257:262] == b"ustar")


def read_zip(fileobj: BinaryIO, limits: ZipLimits) -> Iterator[Member]:
    """Yield each file of the zip in ``fileobj`` (directories are skipped)."""
    _check_end_record(fileobj, limits)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InvalidInput("The archive is not a valid zip file") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if not infos:
            raise InvalidInput("The archive holds no files")
        if len(infos) > limits.max_members:
            raise InvalidInput(
                f"The archive holds {len(infos)} files (maximum {limits.max_members} per batch)"
            )
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_total_bytes:
            raise InvalidInput(
                f"The archive's contents ({_mb(declared)}MB uncompressed) exceed the batch "
                f"maximum ({_mb(limits.max_total_bytes)}MB)"
            )
        budget = [limits.max_total_bytes]  # what is left of the total, counted on real bytes
        for index, info in enumerate(infos, start=1):
            yield _read_member(archive, info, index, limits, budget)


def _end_record(fileobj: BinaryIO) -> tuple[int, int] | None:
    """``(entries, central directory size)`` from the end record (zip64 too), or None when
    there is none (``zipfile`` then reports the archive as invalid)."""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    tail_start = max(0, size - _EOCD.size - 0xFFFF)  # the record plus the longest comment
    fileobj.seek(tail_start)
    tail = fileobj.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    _sig, _disk, _cd_disk, _here, entries, cd_size, _offset, _comment = _EOCD.unpack_from(tail, at)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        locator = at - _ZIP64_LOCATOR.size
        if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
            _sig, _disk, record, _disks = _ZIP64_LOCATOR.unpack_from(tail, locator)
            fileobj.seek(record)
            raw = fileobj.read(_ZIP64_EOCD.size)
            if len(raw) == _ZIP64_EOCD.size and raw[:4] == b"PK\x06\x06":
                fields = _ZIP64_EOCD.unpack(raw)
                entries, cd_size = fields[7], fields[8]
    return entries, cd_size


def _check_end_record(fileobj: BinaryIO, limits: ZipLimits) -> None:
    """Refuse an archive whose index alone is too big, before ``zipfile`` parses it."""
    found = _end_record(fileobj)
    fileobj.seek(0)
    if found is None:
        return
    entries, cd_size = found
    allowed = 2 * limits.max_members  # files, and some folders beside them
    if entries > allowed:
        raise InvalidInput(
            f"The archive holds {entries} entries (maximum {limits.max_members} files per "
            "batch); refused before reading its index"
        )
    if cd_size > allowed * CENTRAL_ENTRY_BYTES:
        raise InvalidInput(
            f"The archive's index takes {cd_size:,} bytes, too large for {limits.max_members} "
            "files (damaged, or names far too long); refused before reading it"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, index: int,
                 limits: ZipLimits, budget: list[int]) -> Member:
    name = safe_member_name(info.filename, index)
    if info.flag_bits & 0x1:
        return Member(name, error="Encrypted zip members are not accepted")
    if looks_like_archive(name, b""):
        return Member(name, error=NESTED)
    if info.compress_type not in METHODS:
        method = METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return Member(name, error=f"Compressed with {method}; only stored and deflate members "
                                  "are accepted (zip it again with your tool's default "
                                  "compression)")
    if info.file_size == 0:
        return Member(name, error="The uploaded file is empty")
    if info.file_size > limits.max_member_bytes:
        return Member(name, error=f"File size ({info.file_size / (1024 * 1024):.1f}MB) exceeds "
                                  f"maximum ({_mb(limits.max_member_bytes)}MB)")
    ratio_cap = max(info.compress_size, 1) * limits.max_ratio
    if info.file_size > ratio_cap:
        return Member(name, error=f"Compression ratio over {limits.max_ratio}:1; refused unread "
                                  "(zip bomb?)")
    # Real bytes are held to the declared size too, so a lying header gains nothing.
    cap = min(info.file_size, limits.max_member_bytes, ratio_cap, budget[0])
    chunks, total = [], 0
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    raise InvalidInput(
                        "The archive is damaged or lies about its sizes (a member inflates past "
                        "its declared size); nothing was imported"
                    )
                if not chunks and looks_like_archive(name, chunk):
                    return Member(name, error=NESTED)
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        return Member(name, error=f"Could not read this member from the zip: {_reason(exc)}")
    budget[0] -= total
    return Member(name, data=b"".join(chunks))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "unsupported compression method"
    if "CRC" in str(exc):
        return "bad CRC (damaged)"
    return "damaged data"
