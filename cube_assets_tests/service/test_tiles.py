"""Map tiles over HTTP: band combinations, stretch, colormaps, mosaics of several tiles, titiler's factory.

Each tile is compared with what rio-tiler reads from the same COG directly, stretched as the
service must stretch it, so a wrong band, range or colormap shows as different pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rio_tiler.colormap import cmap
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.io import Reader

from cube_assets_tests.service.synthetic_cube import CUBE, SyntheticCube

ZOOM = 14


def decode(png: bytes) -> np.ndarray:
    """The ``(bands, H, W)`` pixels of a PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as src:
            return src.read()


def web_tile(cube: SyntheticCube, tile_index: int, row: int, col: int, zoom: int = ZOOM):
    return WEB_MERCATOR_TMS.tile(*cube.lonlat(tile_index, row, col), zoom)


def lcf_item(cube: SyntheticCube, tile: str = "000000", period: int = 0, function: str = "LCF") -> str:
    return f"{CUBE}_{tile}_{cube.period_starts[period]:%Y%m%d}_{function}"


def direct(cube: SyntheticCube, item: str, bands, tile, in_range) -> np.ndarray:
    """What rio-tiler reads of ``bands`` of the composite ``item`` in ``tile``, stretched from ``in_range``."""
    folder = cube.root / CUBE / item.split("_")[1] / cube.period_starts[0].isoformat()
    parts = []
    for band in bands:
        with Reader(str(folder / f"{item}_{band}.tif")) as src:
            parts.append(src.tile(tile.x, tile.y, tile.z, tilesize=256, indexes=1))
    data = parts[0] if len(parts) == 1 else parts[0].create_from_list(parts)
    return decode(data.rescale(in_range=[in_range] * len(bands)).render(img_format="PNG"))


def test_true_colour_tile_is_the_cogs_read_directly_stretched_over_the_display_range(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    tile = web_tile(synthetic_cube, 0, 128, 128)
    item = lcf_item(synthetic_cube)

    response = maps_client.get(f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png?combination=true-colour")

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    pixels = decode(response.content)
    assert pixels.shape == (4, 256, 256)
    np.testing.assert_array_equal(pixels, direct(synthetic_cube, item, ("B04", "B03", "B02"), tile, (0, 4000)))
    assert (pixels[3] == 255).mean() > 0.5  # the tile is inside the image: mostly opaque


def test_rescale_and_any_three_bands_change_the_drawing(synthetic_cube: SyntheticCube, maps_client: TestClient) -> None:
    tile = web_tile(synthetic_cube, 0, 128, 128)
    item = lcf_item(synthetic_cube)
    url = f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png"

    rescaled = decode(maps_client.get(url, params={"bands": "B08,B04,B03", "rescale": "0,3500"}).content)

    np.testing.assert_array_equal(rescaled, direct(synthetic_cube, item, ("B08", "B04", "B03"), tile, (0, 3500)))


def test_clearob_is_drawn_with_its_colormap_from_zero_to_the_most_observations(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    tile = web_tile(synthetic_cube, 0, 128, 128, zoom=16)
    item = lcf_item(synthetic_cube)

    pixels = decode(maps_client.get(f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png?bands=CLEAROB").content)

    ylgn = cmap.get("ylgn")
    one_of_two = {tuple(ylgn[i][:3]) for i in (127, 128)}  # inside the cloud square only merge 0 is clear: 1 of 2
    colours = {tuple(pixels[:3, r, c]) for r in range(0, 256, 32) for c in range(0, 256, 32) if pixels[3, r, c]}
    assert colours and colours <= one_of_two


def test_index_and_provenance_get_their_own_colormaps(synthetic_cube: SyntheticCube, maps_client: TestClient) -> None:
    tile = web_tile(synthetic_cube, 0, 40, 40, zoom=16)
    item = lcf_item(synthetic_cube)
    url = f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png"

    provenance = decode(maps_client.get(url, params={"bands": "PROVENANCE"}).content)
    grey = decode(maps_client.get(url, params={"bands": "PROVENANCE", "colormap": "greys"}).content)

    # Outside the cloud square the last merge is clear: its day of year is the period's last merge date.
    last = synthetic_cube.merge_dates[synthetic_cube.period_starts[0]][-1].timetuple().tm_yday
    first, end = 1, 16  # the period's days of year
    expected = cmap.get("turbo")[round((last - first) * 255 / (end - first))][:3]
    assert tuple(provenance[:3, 128, 128]) == tuple(expected)
    assert not np.array_equal(provenance, grey)


def test_mosaic_of_a_period_covers_both_tiles_and_changes_with_the_period(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    # A zoom-13 tile over the seam between tile 0 and tile 1.
    tile = WEB_MERCATOR_TMS.tile(*synthetic_cube.lonlat(0, 128, 255), 13)
    url = f"/maps/mosaic/{CUBE}-LCF/tiles/{tile.z}/{tile.x}/{tile.y}.png"

    first = decode(maps_client.get(url, params={"period": synthetic_cube.period_starts[0].isoformat()}).content)
    second = decode(maps_client.get(url, params={"period": synthetic_cube.period_starts[1].isoformat()}).content)
    merge_day = synthetic_cube.merge_dates[synthetic_cube.period_starts[0]][0].isoformat()
    merge = decode(
        maps_client.get(f"/maps/mosaic/{CUBE}-merge/tiles/{tile.z}/{tile.x}/{tile.y}.png?date={merge_day}").content
    )

    tile_0, tile_1 = (
        decode(maps_client.get(f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png").content)
        for item in (lcf_item(synthetic_cube), lcf_item(synthetic_cube, tile="000001"))
    )
    opaque = first[3] == 255
    in_0, in_1 = tile_0[3] == 255, tile_1[3] == 255
    assert (in_1 & ~in_0).sum() > 1000  # the web tile reaches well into tile 1
    np.testing.assert_array_equal(opaque, in_0 | in_1)  # both tiles drawn
    np.testing.assert_array_equal(first[:, in_0], tile_0[:, in_0])
    assert not np.array_equal(first[:3][:, opaque], second[:3][:, opaque])  # a later period is brighter
    assert (merge[3] == 255).sum() > 0


def test_a_tile_away_from_every_image_is_transparent(maps_client: TestClient) -> None:
    response = maps_client.get(f"/maps/mosaic/{CUBE}-LCF/tiles/5/3/3.png?period=2024-01-01")

    assert response.status_code == 200
    assert decode(response.content)[-1].max() == 0


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        (f"/maps/images/{CUBE}_000000_20240101_LCF/tiles/14/1/1.png?bands=B99", 400, "no band B99"),
        (f"/maps/images/{CUBE}_000000_20240101_LCF/tiles/14/1/1.png?combination=sepia", 400, "sepia"),
        (f"/maps/images/{CUBE}_000000_20240101_LCF/tiles/14/1/1.png?bands=B04&rescale=9,1", 400, "high must be above"),
        (f"/maps/images/{CUBE}_000000_20240101_LCF/tiles/14/1/1.png?bands=B04,B03", 400, "one band or three"),
        ("/maps/images/nothing/tiles/14/1/1.png", 404, "not in the catalog"),
        (f"/maps/mosaic/{CUBE}-LCF/tiles/14/1/1.png?period=January", 400, "YYYY-MM-DD"),
        (f"/maps/mosaic/{CUBE}-LCF/tiles/14/1/1.png", 400, "exactly one of period"),
        ("/maps/mosaic/nothing/tiles/14/1/1.png?period=2024-01-01", 404, "not in the catalog"),
    ],
)
def test_bad_requests_say_what_was_wrong(maps_client: TestClient, url: str, status: int, message: str) -> None:
    response = maps_client.get(url)

    assert response.status_code == status
    assert message in response.json()["detail"]


def test_titiler_factory_serves_the_image_bands_as_assets(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    tile = web_tile(synthetic_cube, 0, 128, 128)
    item = lcf_item(synthetic_cube)
    base = f"/maps/titiler/images/{item}"

    assets = maps_client.get(f"{base}/assets").json()
    response = maps_client.get(
        f"{base}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"assets": ["B04", "B03", "B02"], "rescale": "0,4000"},
    )

    assert {"B02", "B03", "B04", "CLEAROB", "PROVENANCE"} <= set(assets)
    assert response.status_code == 200
    np.testing.assert_array_equal(
        decode(response.content), direct(synthetic_cube, item, ("B04", "B03", "B02"), tile, (0, 4000))
    )


def test_layout_lists_tiles_periods_dates_and_band_combinations(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    lcf = maps_client.get(f"/maps/collections/{CUBE}-LCF/layout").json()
    merges = maps_client.get(f"/maps/collections/{CUBE}-merge/layout").json()
    products = maps_client.get("/maps/collections").json()

    assert [f["properties"]["tile"] for f in lcf["tiles"]["features"]] == ["000000", "000001"]
    assert [p["start"] for p in lcf["periods"]] == [d.isoformat() for d in synthetic_cube.period_starts]
    assert merges["periods"][0]["dates"] == [
        d.isoformat() for d in synthetic_cube.merge_dates[synthetic_cube.period_starts[0]]
    ]
    assert lcf["combinations"]["true-colour"] == ["B04", "B03", "B02"]
    assert {p["kind"] for p in products if p.get("cube") == CUBE} == {"LCF", "MED", "AVG", "merge"}


def test_tiles_of_an_image_on_s3_are_read_through_vsis3_with_range_requests(
    synthetic_cube: SyntheticCube, s3_server, s3_bucket, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlparse

    from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
    from cube_assets.catalog.models import ImageFile
    from cube_assets_tests.service.maps_app import maps_app
    from cube_assets_tests.service.synthetic_cube import build_synthetic_cube

    cube = build_synthetic_cube(tmp_path / "cube", tiles=1, periods=1, merges_per_period=2)
    item = lcf_item(cube)
    engine = create_catalog_engine(cube.catalog_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        for file in session.query(ImageFile).filter(ImageFile.image_id == item):
            key = f"cube/{item}/{file.band}.tif"
            s3_server.client().upload_file(file.href, s3_bucket, key)
            file.href = f"s3://{s3_bucket}/{key}"
        session.commit()
    engine.dispose()
    endpoint = urlparse(s3_server.endpoint_url)
    for name, value in {
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "AWS_REGION": s3_server.region,
        "AWS_S3_ENDPOINT": endpoint.netloc,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }.items():
        monkeypatch.setenv(name, value)
    tile = web_tile(cube, 0, 128, 128)

    with TestClient(maps_app(cube.catalog_url)) as client:
        response = client.get(f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png?rescale=0,4000")

    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(decode(response.content), direct(cube, item, ("B04", "B03", "B02"), tile, (0, 4000)))
    statuses = s3_server.requests("GET", f"/{s3_bucket}/cube/{item}/B04.tif")
    assert statuses and set(statuses) == {206}  # byte ranges, never the whole file
