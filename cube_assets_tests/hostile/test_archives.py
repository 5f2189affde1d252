"""Hostile zip and tar archives: refused before a byte is written, and nothing already there is touched.

Every archive is built here with ``zipfile``/``tarfile`` (a few are patched byte by byte to hold
what those modules refuse to write: a NUL in a name, sizes that lie). The zipped ``.SAFE`` is
a minimal product (its ``MTD_MSIL2A.xml`` and one band file), which is all extraction needs.
Bombs stay small on disk and in time: their members are MiBs of zeros, refused by ratio with
the default bounds, or by a small configured bound; a 2 GiB declaration is a patched header.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from shapely.geometry import box, mapping

from cube_assets.errors import InvalidScene
from cube_assets.formats.archives import (
    DEFAULT_ARCHIVE_BYTES,
    GIB,
    MAX_MEMBERS,
    PRODUCT_BYTE_LIMITS,
    product_byte_limit,
    tar_members,
    zip_members,
)
from cube_assets.formats.safe_archive import EXTRACTED_FROM, UnsafeArchive, extract_safe_zip, safe_members
from cube_assets.providers.raw_store import CorruptFile, verify_file

PRODUCT = "S2B_MSIL2A_20240105T100000_N0510_R122_T32PQU_20240105T120000.SAFE"
OTHER = "S2B_MSIL2A_20240106T100000_N0510_R122_T32PQU_20240106T120000.SAFE"
BAND = "GRANULE/L2A_T32PQU/IMG_DATA/R60m/T32PQU_20240105T100000_B04_60m.jp2"
ZEROS_8_MIB = bytes(8 << 20)


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (hidden ones too) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): "link"
        if p.is_symlink()
        else "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _safe_zip(path: Path, product: str = PRODUCT, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{product}/MTD_MSIL2A.xml", "<n1:Level-2A_User_Product/>")
        archive.writestr(f"{product}/{BAND}", os.urandom(4096))
        for info, data in extra:
            archive.writestr(info, data)
    return path


def _destination_with_a_bystander(tmp_path: Path) -> Path:
    """The destination folder, already holding somebody else's folder."""
    destination = tmp_path / "dest"
    (destination / "bystander").mkdir(parents=True)
    (destination / "bystander" / "notes.txt").write_bytes(b"left alone")
    return destination


def _patch(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 2  # the local header and the central directory
    path.write_bytes(data.replace(old, new))


def _set_declared_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the zip declares for ``member`` (local header and central directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    position = 0
    while (position := data.find(name, position + 1)) != -1:
        if data[position - 30 : position - 26] == b"PK\x03\x04":
            struct.pack_into("<I", data, position - 30 + 22, size)
        elif data[position - 46 : position - 42] == b"PK\x01\x02":
            struct.pack_into("<I", data, position - 46 + 24, size)
    path.write_bytes(bytes(data))


# -- member paths and kinds ----------------------------------------------------------------------

ZIP_PATH_ATTACKS = {
    "dot-dot": (f"{PRODUCT}/../../evil.txt", "climbs out of the archive with '..'"),
    "dot-dot-backslashes": (f"{PRODUCT}\\..\\..\\evil.txt", "climbs out of the archive with '..'"),
    "backslash-separator": (f"{PRODUCT}\\evil.txt", "uses '\\' as a separator"),
    "absolute": ("/tmp/evil.txt", "has an absolute path"),
    "drive-letter": ("C:/evil.txt", "has an absolute path"),
    "control-character": (f"{PRODUCT}/evil\x1b.txt", "must be letters"),
    "empty-component": (f"{PRODUCT}//evil.txt", "is empty"),
    "dot-component": (f"{PRODUCT}/./evil.txt", "relative folder reference"),
    "hidden-component": (f"{PRODUCT}/.evil.txt", "must be letters"),
    "too-long-component": (f"{PRODUCT}/{'e' * 252}.txt", "longer than 255 bytes"),
    "non-ascii": (f"{PRODUCT}/\u00e9vil.txt", "must be letters"),
    "outside-the-safe": ("evil.txt", "is not inside a .SAFE folder"),
    "second-product": (f"{OTHER}/evil.txt", "holds 2 .SAFE folders"),
}


@pytest.mark.parametrize("attack", sorted(ZIP_PATH_ATTACKS))
def test_zip_member_path_attack_is_refused_naming_archive_and_member_and_nothing_is_written(tmp_path, attack) -> None:
    member, reason = ZIP_PATH_ATTACKS[attack]
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(member, b"evil")])
    destination = _destination_with_a_bystander(tmp_path)
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive) as refused:
        extract_safe_zip(archive, destination)

    message = str(refused.value)
    assert type(refused.value) is UnsafeArchive and message.startswith(f"{PRODUCT}.zip: ") and reason in message
    assert attack == "second-product" or repr(member)[:150] in message
    assert _tree(tmp_path) == before


def test_zip_member_with_a_nul_in_its_stored_name_is_refused(tmp_path) -> None:
    """``zipfile`` cuts a name at NUL when reading; the name as stored is what is checked."""
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(f"{PRODUCT}/evil#x.txt", b"evil")])
    _patch(archive, b"evil#x.txt", b"evil\x00x.txt")
    destination = _destination_with_a_bystander(tmp_path)
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive, match=rf"^{PRODUCT}\.zip: member '.*evil\\x00x\.txt' has a NUL character"):
        extract_safe_zip(archive, destination)

    assert _tree(tmp_path) == before


def _mode_member(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([(_mode_member(f"{PRODUCT}/GRANULE/escape", stat.S_IFLNK | 0o777), b"/etc")], "is a symbolic link"),
        ([(_mode_member(f"{PRODUCT}/GRANULE/pipe", stat.S_IFIFO | 0o644), b"")], "is not a plain file or folder"),
        ([(_mode_member(f"{PRODUCT}/GRANULE/disk", stat.S_IFBLK | 0o644), b"")], "is not a plain file or folder"),
        ([(f"{PRODUCT}/MTD_MSIL2A.xml", b"<second/>")], "appears twice"),
        ([(f"{PRODUCT}/{BAND}/inside-a-file.txt", b"x")], "lies inside a member that is a file"),
    ],
    ids=["symbolic-link", "fifo", "block-device", "duplicate", "file-used-as-folder"],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_member_that_is_not_one_plain_file_is_refused_and_nothing_is_written(tmp_path, extra, reason) -> None:
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=extra)
    destination = _destination_with_a_bystander(tmp_path)
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive) as refused:
        extract_safe_zip(archive, destination)

    assert str(refused.value).startswith(f"{PRODUCT}.zip: member ") and reason in str(refused.value)
    assert _tree(tmp_path) == before


def test_zip_with_more_members_than_a_product_can_have_is_refused(tmp_path) -> None:
    extra = [(f"{PRODUCT}/QI_DATA/m{index}.xml", b"") for index in range(MAX_MEMBERS)]
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=extra)
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive, match=rf"^{PRODUCT}\.zip: has more than {MAX_MEMBERS} members"):
        extract_safe_zip(archive, tmp_path / "dest")

    assert _tree(tmp_path) == before


# -- the product inside, and folders already there -----------------------------------------------


def test_safe_zip_holding_another_product_neither_replaces_nor_touches_that_product(tmp_path) -> None:
    """``A.SAFE.zip`` holding ``OTHER.SAFE`` once replaced the existing, unrelated ``OTHER.SAFE``."""
    destination = tmp_path / "dest"
    other = extract_safe_zip(_safe_zip(tmp_path / f"{OTHER}.zip", OTHER), destination)
    (other / "GRANULE" / "processed-later.txt").write_bytes(b"work of another step")
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", OTHER)
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive, match=rf"^{PRODUCT}\.zip: holds '{OTHER}', not the product asked for, '{PRODUCT}'"
    ):
        extract_safe_zip(archive, destination)

    assert _tree(tmp_path) == before


def test_zip_holding_another_product_than_the_product_id_asked_for_is_refused(tmp_path) -> None:
    archive = _safe_zip(tmp_path / "B04.zip", OTHER)
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive, match=rf"^B04\.zip: holds '{OTHER}', not the product asked for, '{PRODUCT}'"):
        extract_safe_zip(archive, tmp_path / "dest", product_id=PRODUCT.removesuffix(".SAFE"))

    assert _tree(tmp_path) == before


def _hand_made(destination: Path) -> None:
    (destination / PRODUCT).mkdir(parents=True)
    (destination / PRODUCT / "MTD_MSIL2A.xml").write_bytes(b"<a product somebody placed here/>")


def _from_another_archive(destination: Path) -> None:
    _hand_made(destination)
    (destination / PRODUCT / EXTRACTED_FROM).write_text('{"archive": "elsewhere.zip", "size": 1, "mtime_ns": 1}')


def _symlink_elsewhere(destination: Path) -> None:
    (destination.parent / "elsewhere").mkdir()
    (destination.parent / "elsewhere" / "precious.txt").write_bytes(b"precious")
    destination.mkdir(parents=True)
    (destination / PRODUCT).symlink_to(destination.parent / "elsewhere", target_is_directory=True)


@pytest.mark.parametrize(
    "existing",
    [_hand_made, _from_another_archive, _symlink_elsewhere],
    ids=["hand-made", "from-another-archive", "symlink"],
)
def test_a_folder_no_extraction_of_this_archive_made_is_never_replaced(tmp_path, existing) -> None:
    destination = tmp_path / "dest"
    existing(destination)
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip")
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive, match=rf"^{PRODUCT}\.zip: .*{PRODUCT} already exists and was not extracted from this archive"
    ):
        extract_safe_zip(archive, destination)

    assert _tree(tmp_path) == before


def test_a_hard_link_of_the_archive_reuses_its_extraction(tmp_path) -> None:
    """Band files of a raw-store scene are hard links of one zip: any of them finds the extraction."""
    scene = tmp_path / "scene"
    scene.mkdir()
    _safe_zip(scene / "B04.zip")
    os.link(scene / "B04.zip", scene / "B02.zip")
    safe = extract_safe_zip(scene / "B04.zip", scene, product_id=PRODUCT)
    (safe / "marker").write_bytes(b"")

    assert extract_safe_zip(scene / "B02.zip", scene, product_id=PRODUCT) == safe
    assert (safe / "marker").exists()


# -- sizes: bounds, ratios, lies -----------------------------------------------------------------


def test_product_bounds_come_from_what_each_product_kind_can_be() -> None:
    assert product_byte_limit(PRODUCT) == PRODUCT_BYTE_LIMITS["sentinel-2-l2a"] == 3 * GIB // 2
    assert product_byte_limit("S2A_MSIL1C_20240105T100000_N0510_R122_T32PQU_20240105T120000.SAFE") == 1 * GIB
    assert product_byte_limit("LC09_L2SP_008059_20240105_20240106_02_T1.tar") == 3 * GIB // 2
    assert product_byte_limit("B04.tar") == DEFAULT_ARCHIVE_BYTES == 2 * GIB
    assert product_byte_limit(PRODUCT, {"sentinel-2-l2a": 1000}) == 1000


def test_zip_bomb_member_is_refused_by_ratio_under_the_default_bound(tmp_path) -> None:
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(f"{PRODUCT}/GRANULE/zeros.jp2", ZEROS_8_MIB)])
    assert archive.stat().st_size < 100_000
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive,
        match=(
            rf"^{PRODUCT}\.zip: member '.*zeros\.jp2' expands 8388608 bytes from \d+ \(\d+:1\), "
            r"more than the limit of 100:1"
        ),
    ):
        extract_safe_zip(archive, tmp_path / "dest")

    assert _tree(tmp_path) == before


def test_zip_of_many_small_members_is_refused_by_its_total_ratio(tmp_path) -> None:
    """Each member is under the 1 MiB a member may expand freely; together they are a bomb."""
    extra = [(f"{PRODUCT}/QI_DATA/zeros{index}.gml", bytes(768 << 10)) for index in range(8)]
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=extra)
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive,
        match=rf"^{PRODUCT}\.zip: expands \d+ bytes from {archive.stat().st_size} .*more than the limit of 100:1",
    ):
        extract_safe_zip(archive, tmp_path / "dest")

    assert _tree(tmp_path) == before


def test_zip_declaring_two_gib_is_refused_under_the_default_bound_without_reading_it(tmp_path) -> None:
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(f"{PRODUCT}/GRANULE/huge.jp2", os.urandom(1024))])
    _set_declared_size(archive, f"{PRODUCT}/GRANULE/huge.jp2", 2 * GIB)
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive, match=rf"^{PRODUCT}\.zip: unpacks to at least \d+ bytes, more than the limit of {3 * GIB // 2}"
    ):
        extract_safe_zip(archive, tmp_path / "dest")

    assert _tree(tmp_path) == before


def test_a_configured_bound_refuses_an_incompressible_product_above_it(tmp_path) -> None:
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(f"{PRODUCT}/GRANULE/big.jp2", os.urandom(2 << 20))])
    before = _tree(tmp_path)

    with pytest.raises(
        UnsafeArchive, match=rf"^{PRODUCT}\.zip: unpacks to at least \d+ bytes, more than the limit of 1048576"
    ):
        extract_safe_zip(archive, tmp_path / "dest", max_bytes=1 << 20)
    with pytest.raises(UnsafeArchive, match="more than the limit of 1048576"):
        safe_members(archive, max_bytes=1 << 20)

    assert _tree(tmp_path) == before


def test_zip_member_holding_more_than_it_declares_leaves_nothing_behind(tmp_path) -> None:
    """The directory says 1000 bytes, the member holds 4096: reading stops at the declared size and fails."""
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip", extra=[(f"{PRODUCT}/GRANULE/liar.jp2", os.urandom(4096))])
    _set_declared_size(archive, f"{PRODUCT}/GRANULE/liar.jp2", 1000)
    destination = _destination_with_a_bystander(tmp_path)
    before = _tree(tmp_path)

    with pytest.raises(
        InvalidScene, match=rf"^{PRODUCT}\.zip: (cannot be extracted .*liar\.jp2|member '.*liar\.jp2' holds more)"
    ):
        extract_safe_zip(archive, destination)

    assert _tree(tmp_path) == {**before, f"dest/.{PRODUCT}.lock": hashlib.sha256(b"").hexdigest()}


# -- tar archives (checked where they are opened: the raw store's check of every stored file) ----


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _tar_info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


LANDSAT = "LC09_L2SP_008059_20240105_20240106_02_T1"
TAR_ATTACKS = {
    "dot-dot": (_tar_info(f"{LANDSAT}/../../evil.TIF"), "climbs out of the archive with '..'"),
    "absolute": (_tar_info("/tmp/evil.TIF"), "has an absolute path"),
    "backslashes": (_tar_info("..\\..\\evil.TIF"), "climbs out of the archive with '..'"),
    "control-character": (_tar_info(f"{LANDSAT}_SR\x07.TIF"), "must be letters"),
    "symbolic-link": (_tar_info(f"{LANDSAT}_ANG.txt", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link"),
    "hard-link": (_tar_info(f"{LANDSAT}_ANG.txt", tarfile.LNKTYPE, "/etc/passwd"), "is a hard link"),
    "fifo": (_tar_info(f"{LANDSAT}_ANG.txt", tarfile.FIFOTYPE), "is not a plain file or folder"),
    "character-device": (_tar_info(f"{LANDSAT}_ANG.txt", tarfile.CHRTYPE), "is not a plain file or folder"),
    "duplicate": (_tar_info(f"{LANDSAT}_MTL.json"), "appears twice"),
}


@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
@pytest.mark.parametrize("compression", ["tar", "tar.gz"])
def test_tar_member_attack_is_refused_where_the_archive_is_checked(tmp_path, attack, compression) -> None:
    info, reason = TAR_ATTACKS[attack]
    archive = _tar(
        tmp_path / f"{LANDSAT}.{compression}",
        [(_tar_info(f"{LANDSAT}_MTL.json"), b"{}"), (info, b"evil")],
        "w:gz" if compression == "tar.gz" else "w",
    )
    before = _tree(tmp_path)

    with pytest.raises(UnsafeArchive) as refused:
        list(tar_members(archive))
    with pytest.raises(CorruptFile) as stored:
        verify_file(archive)

    for message in (str(refused.value), str(stored.value)):
        assert message.startswith(f"{archive.name}: member {info.name!r}"[:60]) and reason in message
    assert str(stored.value).endswith("(an unsafe archive)") and type(stored.value) is CorruptFile
    assert _tree(tmp_path) == before


def test_tar_gz_bomb_is_refused_by_ratio_before_its_member_is_read(tmp_path) -> None:
    archive = _tar(tmp_path / f"{LANDSAT}.tar.gz", [(_tar_info(f"{LANDSAT}_SR_B4.TIF"), bytes(16 << 20))], "w:gz")
    assert archive.stat().st_size < 100_000

    with pytest.raises(
        CorruptFile, match=rf"^{LANDSAT}\.tar\.gz: expands 16777216 bytes from \d+ .*more than the limit of 100:1"
    ):
        verify_file(archive)


def test_tar_gz_whose_pax_header_is_a_bomb_is_stopped_while_decompressing(tmp_path) -> None:
    """A PAX header is read into memory whole: the decompressed stream is bounded before tarfile sees it."""
    info = _tar_info(f"{LANDSAT}_MTL.json")
    info.pax_headers = {"comment": "z" * (8 << 20)}
    archive = _tar(tmp_path / f"{LANDSAT}.tar.gz", [(info, b"{}")], "w:gz")

    with pytest.raises(
        UnsafeArchive,
        match=(
            rf"^{LANDSAT}\.tar\.gz: decompresses to more than \d+ bytes "
            rf"\(limits: .* and 100:1 of its {archive.stat().st_size} bytes\)"
        ),
    ):
        list(tar_members(archive))


def test_tar_above_a_configured_bound_is_refused(tmp_path) -> None:
    archive = _tar(tmp_path / f"{LANDSAT}.tar", [(_tar_info(f"{LANDSAT}_SR_B4.TIF"), os.urandom(2 << 20))])

    with pytest.raises(
        UnsafeArchive, match=rf"^{LANDSAT}\.tar: unpacks to at least \d+ bytes, more than the limit of 1048576"
    ):
        list(tar_members(archive, max_bytes=1 << 20))


def test_a_sound_tar_and_zip_pass_the_same_checks(tmp_path) -> None:
    tar = _tar(
        tmp_path / f"{LANDSAT}.tar.gz",
        [(_tar_info(f"{LANDSAT}_MTL.json"), b"{}"), (_tar_info(f"{LANDSAT}_SR_B4.TIF"), os.urandom(4096))],
        "w:gz",
    )
    verify_file(tar)
    assert [m.parts for m, _ in tar_members(tar)] == [(f"{LANDSAT}_MTL.json",), (f"{LANDSAT}_SR_B4.TIF",)]
    archive = _safe_zip(tmp_path / f"{PRODUCT}.zip")
    verify_file(archive)
    assert [m.parts[-1] for m, _ in zip_members(archive)] == ["MTD_MSIL2A.xml", BAND.rsplit("/", 1)[-1]]


# -- through the STAC provider and the raw store ------------------------------------------------


def test_a_zip_slip_asset_from_a_stac_api_is_never_stored(stac_server, tmp_path) -> None:
    from cube_assets.providers.base import SENTINEL2_L2A
    from cube_assets.providers.raw_store import RawStore, RawStoreError
    from cube_assets.providers.stac import build_stac_provider

    archive = _safe_zip(tmp_path / "served.zip", extra=[(f"{PRODUCT}/../../evil.txt", b"evil")])
    url = stac_server.serve_file(archive.read_bytes(), "zipped/product.zip")
    area = box(10.0, 10.0, 10.1, 10.1)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": PRODUCT.removesuffix(".SAFE"),
        "collection": SENTINEL2_L2A,
        "geometry": mapping(area),
        "bbox": list(area.bounds),
        "links": [],
        "properties": {"datetime": "2024-01-05T10:00:00Z"},
        "assets": {"Product": {"href": url, "type": "application/zip", "roles": ["data"]}},
    }
    api = stac_server.add_api("cdse-like", [item])
    provider = build_stac_provider(
        "cdse-like", {"url": api.url, "retries": 0, "backoff_s": 0, "assets": {"B04": "Product"}}, {}
    )
    scene = provider.scene_from_item(api.items[0], SENTINEL2_L2A)
    archive.unlink()
    before = _tree(tmp_path)

    with pytest.raises(
        RawStoreError, match=r"cdse-like: scene .* band B04 is corrupt twice: B04\.zip: member .*evil\.txt' climbs out"
    ):
        RawStore(tmp_path / "raw").load(scene, ["B04"], provider)

    folder = tmp_path / "raw" / SENTINEL2_L2A / scene.scene_id
    assert sorted(p.name for p in folder.iterdir()) == ["item.json"]
    assert {p for p in _tree(tmp_path) if p not in before} == {
        "raw",
        f"raw/{SENTINEL2_L2A}",
        f"raw/{SENTINEL2_L2A}/{scene.scene_id}",
        f"raw/{SENTINEL2_L2A}/.{scene.scene_id}.lock",
        f"raw/{SENTINEL2_L2A}/{scene.scene_id}/item.json",
    }
    assert not (tmp_path.parent / "evil.txt").exists()
