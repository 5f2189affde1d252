"""The static STAC catalogue that the client exports: pystac and pystac-client read it, its items locate real pixels.

The test that reads pixels through the exported items uses what odc-stac uses (``proj:code``,
``proj:transform``, ``proj:shape`` and the asset href) with rasterio; odc-stac is not installed here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely.geometry
from affine import Affine
from pystac_client import Client
from pystac_client.warnings import FallbackToPystac, NoConformsTo

from cube_assets import cli
from cube_assets.catalog.stac import validate_stac
from cube_assets.client import Catalog, File, SpectralBand
from cube_assets.client.stac_export import export_static_catalog
from cube_assets.errors import CatalogError
from cube_assets.raster.cog import write_cog
from cube_assets_tests.client.objects_fixtures import LCF, MERGE, RECORDS, SCENES, catalog, filled  # noqa: F401 - pytest fixtures, found by name

UTC = dt.UTC


def test_export_writes_a_catalogue_that_pystac_reads_back(filled: Catalog, tmp_path: Path) -> None:
    result = export_static_catalog(filled, tmp_path / "stac")

    assert (result.collections, result.items) == (3, len(RECORDS))
    root = pystac.Catalog.from_file(str(result.catalog_path))
    collections = {collection.id: collection for collection in root.get_collections()}
    assert sorted(collections) == sorted([LCF, MERGE, SCENES])
    for product_id, collection in collections.items():
        items = list(collection.get_items())
        assert sorted(item.id for item in items) == sorted(r["id"] for r in RECORDS if r["product_id"] == product_id)
        for item in items:
            validate_stac(item.to_dict(include_self_link=False, transform_hrefs=False))
        validate_stac(collection.to_dict(include_self_link=False, transform_hrefs=False))
    merge = collections[MERGE]
    assert merge.extent.spatial.bboxes == [[-46.0, -10.0, -43.0, -9.0]]
    assert merge.extent.temporal.intervals == [
        [dt.datetime(2023, 1, 5, 13, tzinfo=UTC), dt.datetime(2023, 12, 5, 13, tzinfo=UTC)]
    ]
    item = merge.get_item("merge_B_202306")
    assert item is not None and item.properties["cube_assets:properties"]["efficacy"] == 51
    assert item.assets["B04"].href == "/data/merge/B/5_B04.tif"
    assert (
        pystac.CatalogType.determine_type(json.loads(result.catalog_path.read_text()))
        == pystac.CatalogType.SELF_CONTAINED
    )


def test_pystac_client_opens_the_static_catalogue(filled: Catalog, tmp_path: Path) -> None:
    result = export_static_catalog(filled, tmp_path / "stac", product_ids=[SCENES])

    # A static catalogue declares no API conformance: pystac-client says so and walks the files.
    with pytest.warns(NoConformsTo):
        client = Client.open(str(result.catalog_path))
    with pytest.warns(FallbackToPystac):
        collections = [collection.id for collection in client.get_collections()]
    with pytest.warns(FallbackToPystac):
        found = sorted(item.id for item in client.get_items())

    assert collections == [SCENES]
    assert found == sorted(r["id"] for r in RECORDS if r["product_id"] == SCENES)


def test_export_replaces_an_earlier_export_and_refuses_other_folders(filled: Catalog, tmp_path: Path) -> None:
    target = tmp_path / "stac"
    export_static_catalog(filled, target)
    export_static_catalog(filled, target, product_ids=[SCENES])

    assert sorted(p.name for p in target.iterdir()) == ["catalog.json", SCENES]
    assert [p.name for p in tmp_path.iterdir()] == ["stac"]  # no temporary folder left behind
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff")
    with pytest.raises(CatalogError, match="not an earlier STAC export or an empty folder"):
        export_static_catalog(filled, other)
    with pytest.raises(CatalogError, match="products not in the catalog: 'nope'"):
        export_static_catalog(filled, tmp_path / "x", product_ids=["nope"])
    assert not (tmp_path / "x").exists()


def test_exported_items_locate_the_pixels_of_their_files(catalog: Catalog, tmp_path: Path) -> None:
    transform = Affine(20.0, 0.0, 300000.0, 0.0, -20.0, 8250000.0)
    pixels = np.arange(64 * 48, dtype=np.int16).reshape(48, 64)
    path = write_cog(pixels, tmp_path / "red.tif", crs="EPSG:32723", transform=transform, nodata=-9999)
    catalog.products(id="p", name="P").save()
    SpectralBand(
        catalog=catalog, product_id="p", name="red", data_type="Int16", resolution=20, band_index=0, nodata=-9999
    ).save()
    catalog.images(id="one", product_id="p", acquired="2024-05-01T10:00:00Z", crs="EPSG:32723",
                   geometry=shapely.geometry.box(-46.9, -15.8, -46.8, -15.7), geotransform=transform.to_gdal(),
                   width=64, height=48, files={"red": File(str(path), path.stat().st_size)}).save()  # fmt: skip

    result = export_static_catalog(catalog, tmp_path / "stac")

    item = next(pystac.Catalog.from_file(str(result.catalog_path)).get_items(recursive=True))
    with rasterio.open(item.assets["red"].href) as src:
        assert Affine(*item.properties["proj:transform"]) == src.transform
        assert tuple(item.properties["proj:shape"]) == (src.height, src.width)
        assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
        assert item.assets["red"].extra_fields["raster:bands"][0]["nodata"] == src.nodata
        np.testing.assert_array_equal(src.read(1), pixels)


def test_cli_export_stac(filled: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = filled.engine.url.render_as_string(hide_password=False)

    status = cli.main(["catalog", "export-stac", str(tmp_path / "out"), "--url", url, "--product", LCF])

    assert status == 0
    assert f"1 collections, {sum(r['product_id'] == LCF for r in RECORDS)} items" in capsys.readouterr().out
    assert (tmp_path / "out" / LCF / "collection.json").is_file()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert cli.main(["catalog", "export-stac", str(tmp_path / "busy"), "--url", url]) == 2
    assert "not an earlier STAC export" in capsys.readouterr().err
