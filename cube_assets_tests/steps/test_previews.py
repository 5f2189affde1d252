"""A scene's preview handed from surface_reflectance to scene_cog.

As a path on the local store, through S3 otherwise.
"""

from __future__ import annotations

from pathlib import Path

from cube_assets.manifests import ReflectanceScene
from cube_assets.steps.previews import local_preview, share_preview
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_s3 import S3Server

PREVIEW = b"\x00\x00\x00\x0cjP  \r\n\x87\n preview bytes"


def _entry(tmp_path: Path) -> ReflectanceScene:
    pvi = tmp_path / "raw" / "S2A_X.SAFE" / "GRANULE" / "QI_DATA" / "T23LKC_PVI.jp2"
    pvi.parent.mkdir(parents=True)
    pvi.write_bytes(PREVIEW)
    return ReflectanceScene(
        scene_id="S2A_X",
        collection="sentinel-2-l2a",
        datetime="2024-01-05T13:32:29+00:00",
        provider="archive",
        path=str(tmp_path / "raw" / "S2A_X.SAFE"),
        cloud_cover=None,
        footprint=None,
        bands={},
        quality="S2A_X_SCL.tif",
        radiometry={},
        pvi=str(pvi),
    )


def test_on_the_local_store_the_entry_keeps_naming_the_file(tmp_path: Path) -> None:
    store = LocalRasterStore(tmp_path / "store")
    entry = _entry(tmp_path)

    assert share_preview("small", entry, store) == entry
    with local_preview(entry, store) as readable:
        assert readable == entry
    assert not (tmp_path / "store").exists(), "nothing is copied"


def test_on_s3_the_preview_travels_as_a_copy_a_later_step_fetches(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(s3_bucket, prefix="cubes", staging_root=tmp_path / ".staging")
    entry = _entry(tmp_path)

    shared = share_preview("small", entry, store)
    Path(entry.pvi).unlink()  # the step that read the raw scene is gone, and its disk with it

    assert shared.pvi_key == "small/scenes/S2A_X/sr/S2A_X_PVI.jp2"
    assert shared.pvi == f"s3://{s3_bucket}/cubes/small/scenes/S2A_X/sr/S2A_X_PVI.jp2"
    assert store.content_type(shared.pvi_key) == "image/jp2"
    with local_preview(shared, store) as readable:
        local = Path(readable.pvi)
        assert local.read_bytes() == PREVIEW
        assert local.is_relative_to(tmp_path / ".staging")
    assert not local.exists(), "the fetched copy is removed after use"
    assert share_preview("small", shared, store) == shared, "shared once"
