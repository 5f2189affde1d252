"""Zipped Sentinel-2 products (``S2A_MSIL2A_….SAFE.zip``, as the Copernicus Data Space delivers them).

:func:`extract_safe_zip` turns a zip into the ``.SAFE`` folder that
:func:`cube_assets.formats.sentinel2_safe.open_safe` reads, safely and atomically:

* every member is checked before a byte is written, with the rules of
  :mod:`cube_assets.formats.archives` (member paths under the one name rule, no link or
  special file, no duplicate, the declared total under the bound of the product kind, no
  compression ratio above 100:1), and here: every member inside one top-level ``*.SAFE``
  folder, which holds its ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml`` and is the product asked for
  (``product_id``, or the name of a ``<product>.SAFE.zip`` archive). An unsafe archive raises
  :class:`UnsafeArchive` naming the archive and the member, and nothing is written;
* a ``.SAFE`` folder already in the destination is replaced only when an earlier extraction
  of this same archive made it (its ``.extracted-from.json`` names the archive, or a hard link
  of it); any other folder of that name is left as it is and the extraction refused;
* members are copied into a hidden temporary folder beside the destination (CRC-checked as
  they are read, and stopped when a member yields more bytes than it declares), then renamed
  into place. A reader sees either no ``.SAFE`` or a complete one;
* the extracted folder records which archive (name, size, modification time) it came from in
  ``.extracted-from.json``; an archive replaced since (fetched again) is extracted again, and
  the old folder replaced atomically. Extractions of one product are serialized by a lock
  file, so concurrent runs extract it once.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path

from cube_assets.atomic import exclusive_lock
from cube_assets.errors import InvalidScene
from cube_assets.formats.archives import ArchiveMember, UnsafeArchive, copy_member, zip_members
from cube_assets.names import name_problem
from cube_assets.quoting import quoted

__all__ = ["EXTRACTED_FROM", "UnsafeArchive", "extract_safe_zip", "safe_members"]

EXTRACTED_FROM = ".extracted-from.json"
_PRODUCT_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")


def _checked_product(archive: Path, members: list[tuple[ArchiveMember, zipfile.ZipInfo]]) -> str:
    """The one ``.SAFE`` folder all ``members`` are inside, holding its product metadata."""
    tops: set[str] = set()
    for member, _ in members:
        if not member.parts[0].endswith(".SAFE") or (len(member.parts) == 1 and not member.is_dir):
            raise UnsafeArchive(f"{archive.name}: member {quoted(member.name)} is not inside a .SAFE folder")
        tops.add(member.parts[0])
    if len(tops) != 1:
        raise UnsafeArchive(
            f"{archive.name}: holds {len(tops)} .SAFE folders ({', '.join(sorted(tops)) or 'none'}); expected one"
        )
    safe_name = tops.pop()
    present = {member.parts[1:] for member, _ in members if not member.is_dir}
    if not any((name,) in present for name in _PRODUCT_METADATA):
        raise InvalidScene(f"{archive.name}: {safe_name} has no {' or '.join(_PRODUCT_METADATA)}")
    return safe_name


def safe_members(archive: str | os.PathLike[str], *, max_bytes: int | None = None) -> tuple[str, list[zipfile.ZipInfo]]:
    """Check every member of the zipped product ``archive`` (see the module docstring).

    ``max_bytes`` bounds the declared uncompressed total; by default the bound of the product
    kind (:data:`cube_assets.formats.archives.PRODUCT_BYTE_LIMITS`).

    Returns:
        The ``.SAFE`` folder name and the members to extract (files and folders).

    Raises:
        UnsafeArchive: naming the archive and the offending member, for a member path that
            could escape, a link or special file, a duplicate, a member outside the single
            ``*.SAFE`` folder, a total size above the bound, or a ratio above 100:1.
        InvalidScene: if the file is not a readable zip archive, or the ``.SAFE`` has no
            ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``.
    """
    archive = Path(archive)
    members = zip_members(archive, max_bytes=max_bytes)
    return _checked_product(archive, members), [info for _, info in members]


def _expected_product(archive: Path, product_id: str | None) -> str | None:
    """The ``.SAFE`` name the archive must hold: from ``product_id``, else from a ``<product>.SAFE.zip`` name."""
    if product_id is None and archive.name.endswith(".SAFE.zip"):
        product_id = archive.name.removesuffix(".zip")
    if product_id is None:
        return None
    return product_id.removesuffix(".SAFE") + ".SAFE"


def _stamp(archive: Path) -> dict[str, object]:
    status = archive.stat()
    return {"archive": archive.name, "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _extracted_from(folder: Path) -> dict[str, object] | None:
    try:
        document = json.loads((folder / EXTRACTED_FROM).read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _same_archive(record: dict[str, object] | None, archive: Path) -> bool:
    """Whether ``record`` (an ``.extracted-from.json``) names ``archive``, or a hard link of it beside it."""
    if record is None:
        return False
    name = record.get("archive")
    if not isinstance(name, str) or name_problem(name) is not None:
        return False
    if name == archive.name:
        return True
    try:
        return os.path.samefile(archive.parent / name, archive)
    except OSError:
        return False


def _is_current(folder: Path, archive: Path, stamp: dict[str, object]) -> bool:
    """Whether ``folder`` is an extraction of ``archive`` as it is now (same file, size and modification time)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    record = _extracted_from(folder)
    return (
        _same_archive(record, archive)
        and record is not None
        and (record.get("size"), record.get("mtime_ns")) == (stamp["size"], stamp["mtime_ns"])
    )


def _check_replaceable(archive: Path, target: Path) -> None:
    """Refuse to touch ``target`` unless it is absent or an extraction of ``archive`` made it."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir() or not _same_archive(_extracted_from(target), archive):
        raise UnsafeArchive(
            f"{archive.name}: {target} already exists and was not extracted from this archive; it is left as it is"
        )


def extract_safe_zip(
    archive: str | os.PathLike[str],
    destination_dir: str | os.PathLike[str],
    *,
    product_id: str | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Extract the zipped ``.SAFE`` product ``archive`` into ``destination_dir``, safely and atomically.

    ``product_id`` is the product asked for (with or without ``.SAFE``); the archive must hold
    that ``.SAFE``. Without it, an archive named ``<product>.SAFE.zip`` must hold
    ``<product>.SAFE``, and another name is not checked. ``max_bytes`` bounds the declared
    uncompressed size (default: the bound of the product kind). A folder already extracted
    from this very archive (same name, size and modification time) is reused without reading
    the archive again (also under another name that is a hard link of it, as the band files of a
    raw-store scene are).

    Returns:
        The ``.SAFE`` folder, ``destination_dir / <name>.SAFE``.

    Raises:
        UnsafeArchive: naming the archive and member, when a member could escape the folder,
            is a link, lies outside the ``.SAFE``, or makes the archive a bomb; when the
            ``.SAFE`` is not the product asked for; when ``destination_dir`` already has a
            folder of that name that no extraction of this archive made (nothing is written
            or replaced then).
        InvalidScene: if the archive is not a readable zip, a member fails its CRC check, or
            the product has no ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``.
        OSError: if the destination cannot be written.
    """
    archive, destination_dir = Path(archive), Path(destination_dir)
    members = zip_members(archive, max_bytes=max_bytes)
    safe_name = _checked_product(archive, members)
    expected = _expected_product(archive, product_id)
    if expected is not None and safe_name != expected:
        raise UnsafeArchive(f"{archive.name}: holds {quoted(safe_name)}, not the product asked for, {quoted(expected)}")
    target = destination_dir / safe_name
    stamp = _stamp(archive)
    if _is_current(target, archive, stamp):
        return target
    _check_replaceable(archive, target)
    destination_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(destination_dir / f".{safe_name}.lock"):
        if _is_current(target, archive, stamp):
            return target
        _check_replaceable(archive, target)
        staging = destination_dir / f".{safe_name}.{uuid.uuid4().hex[:12]}.extracting"
        stale = destination_dir / f".{safe_name}.{uuid.uuid4().hex[:12]}.stale"
        try:
            staging.mkdir()
            _copy_members(archive, members, staging)
            product = staging / safe_name
            (product / EXTRACTED_FROM).write_text(json.dumps(stamp))
            if target.exists() or target.is_symlink():
                os.rename(target, stale)
            os.rename(product, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(stale, ignore_errors=True)
    return target


def _copy_members(archive: Path, members: list[tuple[ArchiveMember, zipfile.ZipInfo]], staging: Path) -> None:
    root = staging.resolve()
    try:
        with zipfile.ZipFile(archive) as opened:
            for member, info in members:
                path = staging.joinpath(*member.parts)
                if root not in path.resolve().parents:  # belt and braces after the checks above
                    raise UnsafeArchive(
                        f"{archive.name}: member {quoted(member.name)} resolves outside the destination"
                    )
                if member.is_dir:
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                copy_member(archive, opened, member, info, path)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise InvalidScene(f"{archive.name}: cannot be extracted ({exc})") from exc
