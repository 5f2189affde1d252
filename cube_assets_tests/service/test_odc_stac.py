"""odc-stac and stackstac load, from the served API's items, exactly the pixels ``ImageCollection.stack`` gives.

A tile's composites are searched through pystac-client (bands B04 and B08), loaded on the tile's
own grid by each library and compared pixel for pixel (nodata included) with the client's stack
of the same images on the same grid.
"""

from __future__ import annotations

import numpy as np
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from pystac_client import Client

from cube_assets.catalog.expressions import p
from cube_assets.client.geocontext import GeoContext
from cube_assets_tests.service.conftest import CRS, LCF, RESOLUTION, SIZE, TILES, RunningApi

TILE = "023017"


def tile_grid() -> tuple[Affine, tuple[int, int]]:
    x, y = TILES[TILE]
    return Affine(RESOLUTION, 0, x, 0, -RESOLUTION, y), (SIZE, SIZE)


def served_items(api: RunningApi) -> list[pystac.Item]:
    search = Client.open(api.url).search(collections=[LCF], filter=f"\"cube_assets:tile\" = '{TILE}'", limit=2)
    return list(search.items())


def client_stack(api: RunningApi) -> np.ndarray:
    transform, shape = tile_grid()
    images = api.catalog.images.search().filter((p.product_id == LCF) & (p.tile == TILE)).collect()
    stacked = images.stack(["B04", "B08"], GeoContext.from_grid(CRS, transform, shape), mask_nodata=False)
    return np.asarray(stacked)


def test_odc_stac_load_gives_the_pixels_of_image_collection_stack(stac_api: RunningApi) -> None:
    import odc.stac

    items = served_items(stac_api)
    transform, shape = tile_grid()
    loaded = odc.stac.load(items, bands=["B04", "B08"], geobox=GeoBox(shape, transform, CRS), resampling="nearest")

    expected = client_stack(stac_api)
    assert len(items) == 4 and expected.shape == (4, 2, SIZE, SIZE)
    assert [str(t)[:10] for t in loaded.time.values] == [item.datetime.strftime("%Y-%m-%d") for item in items]
    assert loaded.B04.dtype == np.int16 and int(loaded.B04.nodata) == -9999
    actual = np.stack([loaded.B04.values, loaded.B08.values], axis=1)
    np.testing.assert_array_equal(actual, expected)
    assert (expected == -9999).any() and (expected > 0).any()  # nodata and data both compared


def test_stackstac_gives_the_pixels_of_image_collection_stack(stac_api: RunningApi) -> None:
    import stackstac

    items = served_items(stac_api)
    transform, shape = tile_grid()
    x, y = TILES[TILE]
    stacked = stackstac.stack(
        [item.to_dict() for item in items],
        assets=["B04", "B08"],
        epsg=int(CRS.split(":")[1]),
        resolution=RESOLUTION,
        bounds=(x, y - SIZE * RESOLUTION, x + SIZE * RESOLUTION, y),
        dtype="int16",
        fill_value=np.int16(-9999),
        rescale=False,
        resampling=__import__("rasterio.enums", fromlist=["Resampling"]).Resampling.nearest,
    ).compute()

    np.testing.assert_array_equal(stacked.values, client_stack(stac_api))
