"""Zip and tar archives from outside: every member checked before a byte is written, sizes bounded while reading.

The checks, applied to zip (``.zip``) and tar (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz``) alike, each refusal an :class:`UnsafeArchive` naming the archive and the member:

* **Paths.** Every member name must be a relative path of names under the one rule of
  :mod:`cube_assets.names`: no absolute path or drive letter, no ``..``, no ``\\``, no NUL or
  control character, no empty, ``.`` or hidden component, no component over 255 bytes, no
  path over 1024 bytes or 16 levels. Two members may not have the same path, and a file may
  not also be a folder of another member.
* **Kinds.** Only regular files and folders: a symbolic link, a hard link, a device, a FIFO or
  a sparse file is refused (a link could make a later member land outside the destination).
* **Count.** At most :data:`MAX_MEMBERS` members.
* **Sizes.** The declared uncompressed total must stay under the cap of the product kind
  (:func:`product_byte_limit`, from :data:`PRODUCT_BYTE_LIMITS`; callers may pass their own
  ``max_bytes``). The compression ratio is refused above :data:`MAX_COMPRESSION_RATIO`
  (100:1) per zip member and for the whole archive (uncompressed total over the archive's size
  on disk); members and totals under :data:`RATIO_GRACE_BYTES` are exempt, since they cannot
  expand to much whatever their ratio. Satellite products are mostly already-compressed
  rasters (JPEG 2000, deflated GeoTIFF), whose ratio is close to 1.
* **While reading.** Sizes in a zip's directory can lie, so :func:`copy_member` counts the
  bytes it actually writes and stops when they pass the member's declared size;
  :func:`tar_members` reads a compressed tar through a counter that stops when the
  decompressed stream passes the cap or the ratio, before the tar library sees the bytes (a
  tar header can declare a huge PAX record that would otherwise be read into memory).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from cube_assets.errors import InvalidScene
from cube_assets.names import relative_parts, relative_path_problem
from cube_assets.quoting import quoted

GIB = 1024**3
#: Upper bounds of the uncompressed size of one product, by kind. A full Sentinel-2 L2A tile
#: (10, 20 and 60 m bands, TCI, AOT, WVP, SCL, masks, metadata) is about 1.1–1.2 GB, an L1C
#: tile about 0.6–0.8 GB, a Landsat Collection 2 Level-2 bundle (SR and ST bands, QA, angle
#: bands, MTL) about 1 GB; each bound leaves some room above the largest seen.
PRODUCT_BYTE_LIMITS: Mapping[str, int] = {
    "sentinel-2-l2a": 3 * GIB // 2,
    "sentinel-2-l1c": 1 * GIB,
    "landsat-c2": 3 * GIB // 2,
}
#: The bound of an archive whose product kind its names do not tell.
DEFAULT_ARCHIVE_BYTES = 2 * GIB
MAX_COMPRESSION_RATIO = 100
RATIO_GRACE_BYTES = 1 << 20
MAX_MEMBERS = 10_000
CHUNK_SIZE = 1 << 20

_PRODUCT_KINDS = (
    (re.compile(r"^S2[A-D]_MSIL2A_"), "sentinel-2-l2a"),
    (re.compile(r"^S2[A-D]_MSIL1C_"), "sentinel-2-l1c"),
    (re.compile(r"^L[CEOT]0\d_L[12]"), "landsat-c2"),
)


class UnsafeArchive(InvalidScene):
    """An archive member would land outside its folder, is not a plain file or folder, or the archive is a bomb."""


@dataclass(frozen=True)
class ArchiveMember:
    """One checked member: its name in the archive, its path components, and its declared sizes.

    ``compressed`` is the member's compressed size in a zip (``None`` in a tar, whose
    compression, if any, is of the whole stream).
    """

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    compressed: int | None = None


def product_kind(name: str) -> str | None:
    """The product kind a (folder or file) name tells: ``sentinel-2-l2a``, ``sentinel-2-l1c``, ``landsat-c2``.

    Returns:
        The kind, or ``None`` when the name is not a product name this project knows.
    """
    for pattern, kind in _PRODUCT_KINDS:
        if pattern.match(name):
            return kind
    return None


def product_byte_limit(name: str, limits: Mapping[str, int] = PRODUCT_BYTE_LIMITS) -> int:
    """The uncompressed size bound of the product called ``name`` (see :data:`PRODUCT_BYTE_LIMITS`).

    Returns:
        The bound in bytes; :data:`DEFAULT_ARCHIVE_BYTES` for an unknown kind.
    """
    kind = product_kind(name)
    return limits.get(kind, DEFAULT_ARCHIVE_BYTES) if kind is not None else DEFAULT_ARCHIVE_BYTES


def _checked_parts(archive: Path, name: str) -> tuple[str, ...]:
    problem = relative_path_problem(name, "the archive")
    if problem is not None:
        raise UnsafeArchive(f"{archive.name}: member {quoted(name)} {problem}")
    return relative_parts(name)


class _MemberSet:
    """The members seen so far: refuses duplicates, file/folder clashes, too many members and too many bytes."""

    def __init__(self, archive: Path, max_bytes: int) -> None:
        self.archive = archive
        self.max_bytes = max_bytes
        self.files: set[tuple[str, ...]] = set()
        self.folders: set[tuple[str, ...]] = set()
        self.total = 0
        self.count = 0

    def add(self, name: str, parts: tuple[str, ...], is_dir: bool, size: int) -> None:
        where = f"{self.archive.name}: member {quoted(name)}"
        self.count += 1
        if self.count > MAX_MEMBERS:
            raise UnsafeArchive(f"{self.archive.name}: has more than {MAX_MEMBERS} members")
        if parts in self.files or (not is_dir and parts in self.folders):
            raise UnsafeArchive(f"{where} appears twice")
        if any(parts[:depth] in self.files for depth in range(1, len(parts))):
            raise UnsafeArchive(f"{where} lies inside a member that is a file")
        (self.folders if is_dir else self.files).add(parts)
        self.folders.update(parts[:depth] for depth in range(1, len(parts)))
        if size < 0:
            raise UnsafeArchive(f"{where} declares a negative size")
        self.total += size
        if self.total > self.max_bytes:
            raise UnsafeArchive(
                f"{self.archive.name}: unpacks to at least {self.total} bytes, more than the limit of {self.max_bytes}"
            )


def _check_ratio(where: str, size: int, compressed: int) -> None:
    if size > RATIO_GRACE_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise UnsafeArchive(
            f"{where} expands {size} bytes from {compressed} ({size // max(compressed, 1)}:1), "
            f"more than the limit of {MAX_COMPRESSION_RATIO}:1"
        )


# --------------------------------------------------------------------------------------------
# Zip


def zip_members(
    archive: str | os.PathLike[str], *, max_bytes: int | None = None
) -> list[tuple[ArchiveMember, zipfile.ZipInfo]]:
    """Check every member of the zip ``archive`` (see the module docstring).

    ``max_bytes`` defaults to the bound of the product kind the first member's name tells.

    Returns:
        Each member, checked, with its ``ZipInfo`` (to read it with).

    Raises:
        UnsafeArchive: naming the archive and member, for any check of the module docstring.
        InvalidScene: if the file is not a readable zip archive.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as opened:
            infos = opened.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidScene(f"{archive.name}: not a readable zip archive ({exc})") from exc
    if max_bytes is None:
        max_bytes = product_byte_limit(infos[0].filename if infos else archive.name)
    seen = _MemberSet(archive, max_bytes)
    members = []
    for info in infos:
        if "\0" in info.orig_filename:  # zipfile cuts names at NUL: check the name as stored
            raise UnsafeArchive(f"{archive.name}: member {quoted(info.orig_filename)} has a NUL character in its name")
        parts = _checked_parts(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file or folder"
            raise UnsafeArchive(f"{archive.name}: member {quoted(info.filename)} is {kind}")
        is_dir = info.is_dir()
        seen.add(info.filename, parts, is_dir, info.file_size)
        _check_ratio(f"{archive.name}: member {quoted(info.filename)}", info.file_size, info.compress_size)
        members.append((ArchiveMember(info.filename, parts, is_dir, info.file_size, info.compress_size), info))
    _check_ratio(f"{archive.name}:", seen.total, archive.stat().st_size)
    return members


def copy_member(
    archive: Path, opened: zipfile.ZipFile, member: ArchiveMember, info: zipfile.ZipInfo, destination: Path
) -> int:
    """Write the zip member to the new file ``destination``, counting the bytes actually written.

    Returns:
        The number of bytes written.

    Raises:
        UnsafeArchive: when the member yields more bytes than it declared (the file is left
            for the caller to remove with its staging folder), or ``destination`` exists.
        zipfile.BadZipFile: when the member fails its CRC check.
    """
    written = 0
    try:
        with opened.open(info) as source, open(destination, "xb") as target:
            for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
                written += len(chunk)
                if written > member.size:
                    raise UnsafeArchive(
                        f"{archive.name}: member {quoted(member.name)} "
                        f"holds more than the {member.size} bytes it declares"
                    )
                target.write(chunk)
    except FileExistsError:
        raise UnsafeArchive(f"{archive.name}: member {quoted(member.name)} appears twice") from None
    return written


# --------------------------------------------------------------------------------------------
# Tar


class _BoundedReader:
    """A read-only stream that raises :class:`UnsafeArchive` once more than ``limit`` bytes were read."""

    def __init__(self, stream: IO[bytes], limit: int, on_excess: Callable[[int], UnsafeArchive]) -> None:
        self._stream = stream
        self._limit = limit
        self._on_excess = on_excess
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit - self.count + 1
        data = self._stream.read(min(size, self._limit - self.count + 1))
        self.count += len(data)
        if self.count > self._limit:
            raise self._on_excess(self._limit)
        return data


def _decompressed(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # the decompressor's file object is a binary stream
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")  # type: ignore[return-value]  # the decompressor's file object is a binary stream
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")  # type: ignore[return-value]  # the decompressor's file object is a binary stream
    return open(path, "rb")


def _tar_kind_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return "is a symbolic link"
    if member.islnk():
        return "is a hard link"
    if member.issparse():
        return "is a sparse file"
    if not (member.isreg() or member.isdir()):
        return "is not a plain file or folder"
    return None


def tar_members(
    archive: str | os.PathLike[str], *, max_bytes: int | None = None, read: bool = False
) -> Iterator[tuple[ArchiveMember, IO[bytes] | None]]:
    """Check every member of the tar ``archive`` as it streams by (see the module docstring).

    The archive is read once, in order; with ``read`` each file member is also yielded with a
    stream of its bytes (valid until the next member), else with ``None``. ``max_bytes``
    defaults to the bound of the product kind the archive's name tells. The whole
    decompressed stream is bounded by ``max_bytes`` and, past :data:`RATIO_GRACE_BYTES`, by
    :data:`MAX_COMPRESSION_RATIO` times the archive's size.

    Returns:
        An iterator of checked members (and their streams).

    Raises:
        UnsafeArchive: naming the archive and member, for any check of the module docstring
            (raised while iterating, before the offending member's bytes are read).
        InvalidScene: if the file is not a readable tar archive.
    """
    archive = Path(archive)
    if max_bytes is None:
        max_bytes = product_byte_limit(archive.name)
    size = archive.stat().st_size
    # Headers and padding: up to 1 KiB per member beyond the declared sizes, and the end blocks.
    slack = 1024 * MAX_MEMBERS + 20480
    stream_limit = min(max_bytes + slack, max(RATIO_GRACE_BYTES, MAX_COMPRESSION_RATIO * size))

    def excess(limit: int) -> UnsafeArchive:
        return UnsafeArchive(
            f"{archive.name}: decompresses to more than {limit} bytes (limits: {max_bytes} bytes, "
            f"and {MAX_COMPRESSION_RATIO}:1 of its {size} bytes)"
        )

    seen = _MemberSet(archive, max_bytes)
    try:
        with _decompressed(archive) as raw:
            bounded = _BoundedReader(raw, stream_limit, excess)
            with tarfile.open(fileobj=bounded, mode="r|") as opened:  # type: ignore[call-overload]  # the bounded reader is a readable binary stream, as tarfile needs
                for info in opened:
                    parts = _checked_parts(archive, info.name + ("/" if info.isdir() else ""))
                    problem = _tar_kind_problem(info)
                    if problem is not None:
                        raise UnsafeArchive(f"{archive.name}: member {quoted(info.name)} {problem}")
                    seen.add(info.name, parts, info.isdir(), info.size)
                    _check_ratio(f"{archive.name}:", seen.total, size)
                    member = ArchiveMember(info.name, parts, info.isdir(), info.size)
                    yield member, (opened.extractfile(info) if read and info.isreg() else None)
    except UnsafeArchive:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise InvalidScene(f"{archive.name}: not a readable tar archive ({exc})") from exc
