"""``GET /timeseries`` over HTTP: the same values as the Python client, with STAC Item links and clear errors."""

from __future__ import annotations

import json

import pytest
import shapely.geometry
from fastapi.testclient import TestClient
from rasterio.warp import transform_geom

from cube_assets_tests.service.synthetic_cube import CUBE, EPSG, SyntheticCube


def test_point_series_of_merges_per_date_with_values_flags_and_item_links(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    lon, lat = synthetic_cube.lonlat(0, 128, 128)  # in the cloud square of odd merges

    body = maps_client.get(
        "/timeseries", params={"collection": f"{CUBE}-merge", "bands": "B04,B08", "lon": lon, "lat": lat}
    ).json()

    values = body["values"]
    merge_days = [d for start in synthetic_cube.period_starts for d in synthetic_cube.merge_dates[start]]
    assert [v["acquired"][:10] for v in values] == [d.isoformat() for d in merge_days]
    assert [v["raw"]["B04"] for v in values] == [
        synthetic_cube.merge_value("B04", p, m, 128) for p in range(3) for m in range(2)
    ]
    assert values[0]["physical"]["B08"] == pytest.approx(synthetic_cube.merge_value("B08", 0, 0, 128) / 10000)
    assert [v["flags"]["clear"] for v in values] == [True, False] * 3
    assert values[1]["flags"]["quality"] == 9
    assert values[0]["item"] == f"/collections/{CUBE}-merge/items/{values[0]['image_id']}"
    assert body["units"] == {"B04": "reflectance", "B08": "reflectance"}


def test_point_series_of_lcf_names_the_date_each_value_came_from(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    lon, lat = synthetic_cube.lonlat(1, 40, 40)  # clear in every merge: LCF takes the last one

    values = maps_client.get(
        "/timeseries", params={"collection": f"{CUBE}-LCF", "bands": "B04", "lon": lon, "lat": lat}
    ).json()["values"]

    assert len(values) == 3
    for period_index, value in enumerate(values):
        last = synthetic_cube.merge_dates[synthetic_cube.period_starts[period_index]][-1]
        assert value["flags"]["provenance_date"] == last.isoformat()
        assert value["raw"]["B04"] == synthetic_cube.merge_value("B04", period_index, 1, 40)
        assert value["flags"]["clear_observations"] == value["flags"]["total_observations"] == 2


def test_polygon_series_gives_mean_median_and_clear_pixels_per_date(
    synthetic_cube: SyntheticCube, maps_client: TestClient
) -> None:
    transform = synthetic_cube.tile_transform(1)
    (x0, y0), (x1, y1) = transform * (10, 20), transform * (50, 60)  # clear in every merge
    polygon = transform_geom(
        f"EPSG:{EPSG}", "EPSG:4326", shapely.geometry.mapping(shapely.geometry.box(x0, y1, x1, y0))
    )

    values = maps_client.get(
        "/timeseries", params={"collection": f"{CUBE}-merge", "bands": "B04", "geometry": json.dumps(polygon)}
    ).json()["values"]

    assert len(values) == 6
    assert values[1]["raw"]["B04"]["mean"] == pytest.approx(synthetic_cube.merge_value("B04", 0, 1, 0))
    assert values[1]["raw"]["B04"]["median"] == synthetic_cube.merge_value("B04", 0, 1, 0)
    assert values[1]["clear_pixels"] == values[1]["pixels"] == pytest.approx(40 * 40, rel=0.05)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"collection": f"{CUBE}-merge", "bands": "B04"}, 400, "give lon and lat"),
        ({"collection": f"{CUBE}-merge", "bands": "B04", "lon": 0, "lat": 91}, 400, "latitudes"),
        ({"collection": f"{CUBE}-merge", "bands": "B99", "lon": 0, "lat": 0}, 400, "no band B99"),
        ({"collection": "nothing", "bands": "B04", "lon": 0, "lat": 0}, 404, "not in the catalog"),
        ({"collection": f"{CUBE}-merge", "bands": "B04", "geometry": "{oops"}, 400, "not JSON"),
    ],
)
def test_bad_requests_say_what_was_wrong(maps_client: TestClient, params: dict, status: int, message: str) -> None:
    response = maps_client.get("/timeseries", params=params)

    assert response.status_code == status
    assert message in response.json()["detail"]
