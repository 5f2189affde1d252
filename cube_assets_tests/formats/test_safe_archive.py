"""Zipped ``.SAFE`` products: safe, atomic extraction, read back through the ``.SAFE`` code.

The good archive is built here from the real T29UNU L2A product (only the files reading it
needs); the malicious ones add a single crafted member to it.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from cube_assets.errors import InvalidScene
from cube_assets.formats.safe_archive import EXTRACTED_FROM, UnsafeArchive, extract_safe_zip
from cube_assets.formats.sentinel2_safe import open_safe

pytestmark = pytest.mark.real_data

GRANULE = "GRANULE/L2A_T29UNU_A038058_20221005T115407"
NEEDED = [
    "MTD_MSIL2A.xml",
    f"{GRANULE}/MTD_TL.xml",
    f"{GRANULE}/IMG_DATA/R60m/T29UNU_20221005T115411_B04_60m.jp2",
    f"{GRANULE}/IMG_DATA/R60m/T29UNU_20221005T115411_SCL_60m.jp2",
]


def _zip(t29unu_safe: Path, path: Path, extra: zipfile.ZipInfo | None = None, extra_data: bytes = b"x") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in NEEDED:
            archive.write(t29unu_safe / relative, f"{t29unu_safe.name}/{relative}")
        if extra is not None:
            archive.writestr(extra, extra_data)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".extracting", ".stale")))


def test_extracted_product_reads_like_the_original(t29unu_safe, tmp_path) -> None:
    archive = _zip(t29unu_safe, tmp_path / "product.zip")

    safe = extract_safe_zip(archive, tmp_path / "out")

    assert safe == tmp_path / "out" / t29unu_safe.name
    product, original = open_safe(safe), open_safe(t29unu_safe)
    assert product.metadata == original.metadata
    assert product.metadata.offset("B04") == -1000.0
    assert product.band_path("B04", 60).read_bytes() == original.band_path("B04", 60).read_bytes()
    assert _leftovers(tmp_path / "out") == []


def test_an_extracted_product_is_reused_until_the_archive_changes(t29unu_safe, tmp_path) -> None:
    archive = _zip(t29unu_safe, tmp_path / "product.zip")
    safe = extract_safe_zip(archive, tmp_path / "out")
    marker = safe / "GRANULE" / "left-by-the-first-extraction"
    marker.write_text("")

    assert extract_safe_zip(archive, tmp_path / "out") == safe
    assert marker.exists()  # not extracted again

    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))  # fetched again
    assert extract_safe_zip(archive, tmp_path / "out") == safe
    assert not marker.exists()  # the old folder was replaced by a fresh extraction
    assert (safe / EXTRACTED_FROM).is_file() and _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (
            "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE/../../evil.txt",
            "climbs out of the archive with '..'",
        ),
        (
            "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE\\..\\..\\evil.txt",
            "climbs out of the archive with '..'",
        ),
        ("/tmp/evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
        ("evil.txt", "is not inside a .SAFE folder"),
    ],
    ids=["dot-dot", "dot-dot-backslashes", "absolute", "drive-letter", "outside-the-safe"],
)
def test_zip_slip_member_is_refused_naming_archive_and_member_and_nothing_is_written(
    t29unu_safe, tmp_path, member, reason
) -> None:
    archive = _zip(t29unu_safe, tmp_path / "malicious.zip", zipfile.ZipInfo(member))
    destination = tmp_path / "deep" / "out"

    with pytest.raises(UnsafeArchive, match=rf"malicious\.zip: member .*evil\.txt.* {reason}"):
        extract_safe_zip(archive, destination)

    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert not destination.exists() or list(destination.iterdir()) == []


def test_symbolic_link_member_is_refused(t29unu_safe, tmp_path) -> None:
    link = zipfile.ZipInfo(f"{t29unu_safe.name}/GRANULE/escape")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip(t29unu_safe, tmp_path / "link.zip", link, b"/etc")

    with pytest.raises(UnsafeArchive, match=r"link\.zip: member .*GRANULE/escape.* is a symbolic link"):
        extract_safe_zip(archive, tmp_path / "out")


def test_an_archive_bigger_than_the_limit_is_refused_before_extraction(t29unu_safe, tmp_path) -> None:
    archive = _zip(t29unu_safe, tmp_path / "product.zip")
    with pytest.raises(UnsafeArchive, match="more than the limit of 1000000"):
        extract_safe_zip(archive, tmp_path / "out", max_bytes=1_000_000)
    assert not (tmp_path / "out" / t29unu_safe.name).exists()


def test_a_damaged_member_leaves_no_product_behind(t29unu_safe, tmp_path) -> None:
    archive = _zip(t29unu_safe, tmp_path / "product.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        info = opened.getinfo(f"{t29unu_safe.name}/{NEEDED[2]}")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))

    with pytest.raises(InvalidScene, match=r"product\.zip: cannot be extracted"):
        extract_safe_zip(archive, tmp_path / "out")

    assert not (tmp_path / "out" / t29unu_safe.name).exists()
    assert _leftovers(tmp_path / "out") == []


def test_a_zip_without_product_metadata_is_not_a_product(t29unu_safe, tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr(f"{t29unu_safe.name}/manifest.safe", "<xfdu/>")
    with pytest.raises(InvalidScene, match="has no MTD_MSIL2A.xml or MTD_MSIL1C.xml"):
        extract_safe_zip(tmp_path / "empty.zip", tmp_path / "out")
    assert list((tmp_path / "out").glob("*.SAFE")) == []
