"""Image collections: list helpers, coverage, and pixels loaded from COGs that the graph wrote.

The helper and coverage tests use the small filled catalog (SQLite and PostgreSQL). The pixel
tests run the real graph once (the real Sentinel-2 L2A T29UNU product onto one 256 × 256 px tile
of a 60 m grid in the Irish Transverse Mercator: scene COGs, a per-date merge and an LCF
composite, catalogued in SQLite); the PostgreSQL variant copies that catalog into a PostgreSQL
schema through the object API. Then: search → collect → stack/mosaic/download, compared with the
files read directly by rasterio.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely.geometry
from dagster import instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import default_catalog_url
from cube_assets.catalog.expressions import properties as p
from cube_assets.client import Band, Catalog, Image, ObjectState, Product
from cube_assets.client.collection import Collection, ImageCollection
from cube_assets.client.geocontext import GeoContext
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import CatalogError
from cube_assets.partitions import partition_key
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.client.objects_fixtures import BACKENDS, LCF, MERGE, RECORDS, TILES, expected_ids, filled  # noqa: F401 - pytest fixtures, found by name
from cube_assets_tests.conftest import write_cube_file

UTC = dt.UTC


# ------------------------------------------------------------------------------ list helpers


@pytest.fixture
def merges(filled: Catalog) -> ImageCollection:
    return Image.search(filled).filter(p.product_id == MERGE).collect()


def test_filter_keeps_order_and_type(merges: ImageCollection) -> None:
    clear = merges.filter(lambda image: image.cloud_fraction is not None and image.cloud_fraction < 0.3)
    by_path = merges.filter("properties.clear")

    assert isinstance(clear, ImageCollection)
    assert (
        [i.id for i in clear]
        == [i.id for i in by_path]
        == expected_ids(
            lambda r: r["product_id"] == MERGE and r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.3
        )
    )


def test_sorted_by_several_predicates_with_unknown_values_last(merges: ImageCollection) -> None:
    ordered = merges.sorted("cloud_fraction", "id")

    values = [(i.cloud_fraction, i.id) for i in ordered]
    known = [v for v in values if v[0] is not None]
    assert known == sorted(known)
    assert [v[0] for v in values[len(known) :]] == [None, None, None]


def test_sort_descending_by_path_and_dash(merges: ImageCollection) -> None:
    by_flag = [i.id for i in merges.sort("properties.efficacy", ascending=False)]
    by_dash = [i.id for i in merges.sort("-properties.efficacy")]

    efficacies = [Image.get(i, catalog=merges[0].catalog).properties["efficacy"] for i in by_flag[:3]]  # type: ignore[union-attr]  # saved by the test or its fixture just before
    assert by_flag == by_dash and efficacies == sorted(efficacies, reverse=True) and efficacies[0] == 112


def test_groupby_month_yields_sorted_groups(merges: ImageCollection) -> None:
    groups = [(month, [i.tile for i in group]) for month, group in merges.groupby("acquired.month")]

    assert [month for month, _ in groups] == list(range(1, 13))
    assert all(tiles == ["A", "B", "C"] for _, tiles in groups)


def test_groupby_several_predicates_gives_tuple_keys(merges: ImageCollection) -> None:
    keys = [key for key, _ in merges.groupby("tile", lambda image: image.properties["sensor"])]

    assert keys == [(t, s) for t in "ABC" for s in ("MSI", "OLI")]


def test_map_and_each(merges: ImageCollection) -> None:
    dates = merges.each.acquired.date().collect()
    same = merges.map(lambda image: image)
    clouds = merges.map(lambda image: image.cloud_fraction)

    assert dates[:3] == [dt.date(2023, 1, 5)] * 3
    assert isinstance(same, ImageCollection) and len(same) == 36
    assert isinstance(clouds, list) and clouds == [i.cloud_fraction for i in merges]
    assert merges.each.properties["sensor"].collect(set) == {"MSI", "OLI"}


def test_slicing_and_adding_keep_the_collection_type(merges: ImageCollection) -> None:
    head = merges[:2]

    assert isinstance(head, ImageCollection) and [i.id for i in head] == [i.id for i in merges.to_list()[:2]]
    assert len(head + merges[2:4]) == 4


def test_predicates_that_do_not_apply_name_the_step() -> None:
    with pytest.raises(CatalogError, match="has no 'nope'"):
        Collection([{"a": 1}]).sorted("a.nope")
    with pytest.raises(CatalogError, match="at least one predicate"):
        Collection([1]).groupby()


# ------------------------------------------------------------------------------ coverage


def test_image_coverage_is_the_covered_share_of_the_area(filled: Catalog) -> None:
    image = Image.get("merge_B_202301", catalog=filled)
    assert image is not None
    half = shapely.geometry.box(-44.5, -10.0, -43.5, -9.0)  # half over tile B, half over tile C

    assert image.coverage(half) == pytest.approx(0.5, abs=1e-3)
    assert image.coverage(shapely.geometry.box(-44.9, -9.9, -44.1, -9.1)) == pytest.approx(1.0)
    assert image.coverage(shapely.geometry.box(-40, -9.9, -39, -9.1)) == 0.0


def test_filter_coverage_keeps_images_covering_enough(filled: Catalog) -> None:
    area = shapely.geometry.box(-44.5, -10.0, -43.5, -9.0)
    images = Image.search(filled).intersects(area).collect()

    full = images.filter_coverage(area, minimum_coverage=0.9)
    half = images.filter_coverage(area, minimum_coverage=0.5)

    assert full == []
    half_ids = {i.id for i in half}
    assert half_ids == {r["id"] for r in RECORDS if r["tile"] in ("B", "C")}


@pytest.mark.parametrize("bad", [-0.1, 1.5, "all", True])
def test_filter_coverage_minimum_must_be_a_share(merges: ImageCollection, bad: Any) -> None:
    with pytest.raises(CatalogError, match="minimum_coverage must be a number in \\[0, 1\\]"):
        merges.filter_coverage(shapely.geometry.box(*TILES["A"]), bad)


def test_coverage_of_a_line_is_refused(merges: ImageCollection) -> None:
    with pytest.raises(CatalogError, match="geometry with an area"):
        merges[0].coverage(shapely.geometry.LineString([(-45.5, -9.5), (-45.2, -9.4)]))


# ------------------------------------------------------------------------------ pixels from the graph

IRELAND = {
    "name": "ireland",
    "collection": "sentinel-2-l2a",
    "providers": ["archive"],
    "grid": {
        "kind": "user",
        "name": "ITM60",
        "crs": 2157,
        "origin": [577620, 680640],
        "tile_size": [256, 256],
        "resolution": 60,
    },
    "tiles": ["000000"],
    "start_date": "2022-10-01",
    "end_date": "2022-10-10",
    "temporal": {"step": "16D", "restart": "yearly"},
    "bands": [{"name": "B04", "common_name": "red"}, {"name": "B8A", "common_name": "nir"}],
    "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
    "composites": ["LCF"],
}
TILE_BOX_2157 = (577620.0, 680640.0 - 256 * 60, 577620.0 + 256 * 60, 680640.0)


@pytest.fixture(scope="module")
def graph_data(tmp_path_factory: pytest.TempPathFactory, t29unu_safe: Path) -> Path:
    """Materialize every stage of one partition over the real T29UNU product; return the data root."""
    root = tmp_path_factory.mktemp("ireland")
    archive = root / "archive"
    archive.mkdir()
    (archive / t29unu_safe.name).symlink_to(t29unu_safe)  # read in place, never copied into the repo
    config = write_cube_file(root, IRELAND, [{"name": "archive", "driver": "local", "options": {"root": str(archive)}}])
    defs = build_definitions(config, root / "data")
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(
            build_cube_assets(load_project_config(config).cube("ireland")),
            partition_key=partition_key("000000", "2022-09-30"),
            instance=instance,
            resources=defs.resources,
        )
    assert result.success
    return root / "data"


def _copy(source: Catalog, target: Catalog) -> None:
    """Copy every product, band and image through the object API (what a user migrating would do)."""
    for product in Product.search(source):
        target.products(**{k: v for k, v in product.to_dict().items() if k not in ("created", "modified")}).save()
    for band in Band.search(source):
        type(band)(catalog=target, **{k: v for k, v in band.to_dict().items() if k != "type"}).save()
    for image in Image.search(source):
        target.images(**{k: v for k, v in image.to_dict().items() if k not in ("created", "modified")}).save()


@pytest.fixture(scope="module", params=BACKENDS)
def graph_catalog(request: pytest.FixtureRequest, graph_data: Path) -> Iterator[Catalog]:
    """The catalog the graph wrote (SQLite), or a PostgreSQL copy of it."""
    graph = Catalog(default_catalog_url(graph_data))
    if request.param == "sqlite":
        with graph:
            yield graph
        return
    server = request.getfixturevalue("postgresql_server")
    schema = f"catalog_graph_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE SCHEMA "{schema}"')
    try:
        with graph, Catalog(server.schema_url(schema)) as copy:
            _copy(graph, copy)
            yield copy
    finally:
        server.admin(f'DROP SCHEMA "{schema}" CASCADE')


def _read(href: str) -> np.ma.MaskedArray:
    with rasterio.open(href) as src:
        return src.read(1, masked=True)


def _tile_images(catalog: Catalog) -> ImageCollection:
    tile = shapely.geometry.box(-8.25, 52.78, -8.18, 52.83)  # inside the tile (ITM 577620..592980 E), in lon/lat
    return (
        Image.search(catalog)
        .intersects(tile)
        .filter(p.product_id.in_(["ireland-LCF", "ireland-merge"]))
        .sort("product_id")
        .collect()
    )


def test_search_collect_stack_loads_the_graphs_pixels(graph_catalog: Catalog) -> None:
    images = _tile_images(graph_catalog)
    assert [i.product_id for i in images] == ["ireland-LCF", "ireland-merge"]

    stack = images.stack("B04 B8A")  # both share the tile's grid, which becomes the default

    assert stack.shape == (2, 2, 256, 256)
    for index, image in enumerate(images):
        for band_index, band in enumerate(("B04", "B8A")):
            expected = _read(image.files[band].href)
            np.testing.assert_array_equal(stack.mask[index, band_index], np.ma.getmaskarray(expected))
            np.testing.assert_array_equal(stack[index, band_index].compressed(), expected.compressed())
    assert stack.count() > 1000  # real, unmasked reflectance pixels


def test_mosaic_puts_the_last_image_on_top(graph_catalog: Catalog) -> None:
    images = _tile_images(graph_catalog)

    mosaic = images.mosaic("B04")
    reversed_mosaic = images.sorted("product_id", reverse=True).mosaic("B04")

    merge = _read(images[1].files["B04"].href)
    lcf = _read(images[0].files["B04"].href)
    assert mosaic.shape == (1, 256, 256)
    valid = ~np.ma.getmaskarray(merge)
    np.testing.assert_array_equal(mosaic[0][valid], merge[valid])
    valid_lcf = ~np.ma.getmaskarray(lcf)
    np.testing.assert_array_equal(reversed_mosaic[0][valid_lcf], lcf[valid_lcf])


def test_a_scene_is_warped_onto_the_tile_grid(graph_catalog: Catalog) -> None:
    scene = Image.search(graph_catalog).filter(p.product_id == "sentinel-2-l2a").first()
    assert scene is not None
    grid = GeoContext(TILE_BOX_2157, "EPSG:2157", resolution=60)

    warped = scene.ndarray("B04", grid)  # the source collection has no band rows: types come from the file
    own = scene.ndarray("B04", GeoContext.from_grid(*_grid_of(scene.files["B04"].href)))

    assert warped.shape == (1, 256, 256) and warped.count() > 1000
    source = _read(scene.files["B04"].href)
    np.testing.assert_array_equal(own[0].compressed(), source.compressed())
    assert warped.min() >= source.min() and warped.max() <= source.max()


def _grid_of(href: str) -> tuple[Any, Any, tuple[int, int]]:
    with rasterio.open(href) as src:
        return src.crs, src.transform, (src.height, src.width)


def test_images_on_different_grids_need_a_geocontext(graph_catalog: Catalog) -> None:
    images = Image.search(graph_catalog).filter(p.tags != "nothing").collect()  # composite, merge and scene

    with pytest.raises(CatalogError, match="has no geotransform, width, height|different grids"):
        images.stack("B04")


def test_a_band_missing_from_an_image_is_named(graph_catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="has no file for band\\(s\\) \\['DATASOURCE'\\]"):
        _tile_images(graph_catalog).stack("DATASOURCE")


def test_download_writes_one_readable_file_per_image(graph_catalog: Catalog, tmp_path: Path) -> None:
    images = _tile_images(graph_catalog)

    paths = images.download("B04", tmp_path)

    assert [Path(path).name for path in paths] == [f"{image.id}-B04.tif" for image in images]
    for path, image in zip(paths, images, strict=True):
        np.testing.assert_array_equal(_read(str(path)).filled(-9999), _read(image.files["B04"].href).filled(-9999))


def test_upload_ndarray_catalogs_a_new_image_that_loads_back(graph_catalog: Catalog, tmp_path: Path) -> None:
    grid = GeoContext(TILE_BOX_2157, "EPSG:2157", resolution=60)
    bands = Product.get("ireland-LCF", catalog=graph_catalog).bands()  # type: ignore[union-attr]  # saved by the test or its fixture just before
    rng = np.random.default_rng(7)
    pixels = np.stack([rng.integers(0, 200, (256, 256)).astype(np.int16) for _ in bands])
    image = graph_catalog.images(
        id=f"upload-{uuid.uuid4().hex[:8]}", product_id="ireland-LCF", acquired="2022-10-20T00:00:00Z", tags=["upload"]
    )

    store = LocalRasterStore(tmp_path / "store")

    upload = image.upload_ndarray(pixels, store=store, raster_meta=grid)
    upload.wait_for_completion(timeout=60)
    try:
        assert upload.status == "success", upload.error
        assert image.state == ObjectState.SAVED and sorted(image.files) == sorted(b.name for b in bands)
        assert image.crs is not None and image.width == 256
        loaded = Image.get(image.id, catalog=graph_catalog).ndarray("B04 B8A")  # type: ignore[union-attr]  # saved by the test or its fixture just before
        np.testing.assert_array_equal(loaded.data, pixels[:2])
        with pytest.raises(CatalogError, match="upload creates new images only"):
            image.upload_ndarray(pixels, store=store, raster_meta=grid)
    finally:
        if image.state != ObjectState.UNSAVED:
            image.delete()  # the graph's catalog is shared by the module's tests
