"""Zipped Sentinel-2 products (``S2A_MSIL2A_….SAFE.zip``, as the Copernicus Data Space delivers them).

:func:`extract_safe_zip` turns a zip into the ``.SAFE`` folder that
:func:`cube_assets.sources.sentinel2_safe.open_safe` reads, safely and atomically:

* every member is checked before a byte is written: no absolute path, no drive letter, no
  ``..`` component (``\\`` counts as a separator too), no symbolic link, every member inside
  one top-level ``*.SAFE`` folder, and the declared uncompressed total under ``max_bytes``.
  An unsafe archive raises :class:`UnsafeArchive` naming the archive and the member, and
  nothing is extracted ("zip slip" cannot write outside the destination);
* members are copied into a hidden temporary folder beside the destination (CRC-checked as
  they are read); the product is accepted only if its ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``
  is there, then renamed into place. A reader sees either no ``.SAFE`` or a complete one;
* the extracted folder records which archive (name, size, modification time) it came from in
  ``.extracted-from.json``; an archive replaced since (fetched again) is extracted again, and
  the old folder replaced atomically. Extractions of one product are serialized by a lock
  file, so concurrent runs extract it once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from cube_assets.atomic import exclusive_lock
from cube_assets.errors import InvalidScene

#: Default bound on the uncompressed size of one product (a full L2A tile is about 1.2 GB).
MAX_PRODUCT_BYTES = 20 * 1024**3
EXTRACTED_FROM = ".extracted-from.json"
_PRODUCT_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchive(InvalidScene):
    """A zip member would be written outside its product folder, or the archive is not a product."""


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path components of a member, after refusing every form that could escape the destination."""
    name = info.filename
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        raise UnsafeArchive(f"{archive.name}: member {name!r} has an absolute path")
    parts = tuple(part for part in PurePosixPath(normalized).parts if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"{archive.name}: member {name!r} climbs out of the archive with '..'")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"{archive.name}: member {name!r} is a symbolic link")
    return parts


def safe_members(archive: str | os.PathLike[str], *, max_bytes: int = MAX_PRODUCT_BYTES) -> tuple[str, list[zipfile.ZipInfo]]:
    """Check every member of the zipped product ``archive`` (see the module docstring).

    Returns:
        The ``.SAFE`` folder name and the members to extract (files and folders).

    Raises:
        UnsafeArchive: naming the archive and the offending member, for an absolute path, a
            ``..`` component, a symbolic link, a member outside the single ``*.SAFE`` folder,
            or a total size above ``max_bytes``.
        InvalidScene: if the file is not a readable zip archive.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as opened:
            members = opened.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidScene(f"{archive.name}: not a readable zip archive ({exc})") from None
    tops: set[str] = set()
    total = 0
    for info in members:
        parts = _member_parts(archive, info)
        if not parts:
            continue
        if not parts[0].endswith(".SAFE") or (len(parts) == 1 and not info.is_dir()):
            raise UnsafeArchive(f"{archive.name}: member {info.filename!r} is not inside a .SAFE folder")
        tops.add(parts[0])
        total += info.file_size
    if len(tops) != 1:
        raise UnsafeArchive(
            f"{archive.name}: holds {len(tops)} .SAFE folders ({', '.join(sorted(tops)) or 'none'}); expected one"
        )
    if total > max_bytes:
        raise UnsafeArchive(f"{archive.name}: unpacks to {total} bytes, more than the limit of {max_bytes}")
    return tops.pop(), members


def _stamp(archive: Path) -> dict[str, object]:
    status = archive.stat()
    return {"archive": archive.name, "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _extracted_from(folder: Path) -> dict[str, object] | None:
    try:
        document = json.loads((folder / EXTRACTED_FROM).read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def extract_safe_zip(
    archive: str | os.PathLike[str], destination_dir: str | os.PathLike[str], *, max_bytes: int = MAX_PRODUCT_BYTES
) -> Path:
    """Extract the zipped ``.SAFE`` product ``archive`` into ``destination_dir``, safely and atomically.

    A folder already extracted from this very archive (same name, size and modification
    time) is reused without reading the archive again.

    Returns:
        The ``.SAFE`` folder, ``destination_dir / <name>.SAFE``.

    Raises:
        UnsafeArchive: naming the archive and member, when a member could escape the folder,
            is a link or lies outside the ``.SAFE`` (nothing is written then).
        InvalidScene: if the archive is not a readable zip, a member fails its CRC check, or
            the product has no ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``.
        OSError: if the destination cannot be written.
    """
    archive, destination_dir = Path(archive), Path(destination_dir)
    safe_name, members = safe_members(archive, max_bytes=max_bytes)
    target = destination_dir / safe_name
    stamp = _stamp(archive)
    destination_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(destination_dir / f".{safe_name}.lock"):
        if target.is_dir() and _extracted_from(target) == stamp:
            return target
        staging = destination_dir / f".{safe_name}.{uuid.uuid4().hex[:12]}.extracting"
        stale = destination_dir / f".{safe_name}.{uuid.uuid4().hex[:12]}.stale"
        try:
            staging.mkdir()
            _copy_members(archive, members, staging)
            product = staging / safe_name
            if not any((product / name).is_file() for name in _PRODUCT_METADATA):
                raise InvalidScene(f"{archive.name}: {safe_name} has no {' or '.join(_PRODUCT_METADATA)}")
            (product / EXTRACTED_FROM).write_text(json.dumps(stamp))
            if target.exists() or target.is_symlink():
                os.rename(target, stale)
            os.rename(product, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(stale, ignore_errors=True)
    return target


def _copy_members(archive: Path, members: list[zipfile.ZipInfo], staging: Path) -> None:
    root = staging.resolve()
    try:
        with zipfile.ZipFile(archive) as opened:
            for info in members:
                parts = _member_parts(archive, info)
                if not parts:
                    continue
                path = staging.joinpath(*parts)
                if root not in path.resolve().parents:  # belt and braces after the checks above
                    raise UnsafeArchive(f"{archive.name}: member {info.filename!r} resolves outside the destination")
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with opened.open(info) as source, open(path, "xb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                except FileExistsError:
                    raise UnsafeArchive(f"{archive.name}: member {info.filename!r} appears twice") from None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise InvalidScene(f"{archive.name}: cannot be extracted ({exc})") from None
