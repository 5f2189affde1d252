"""Searching products and images with property expressions, geometry, sort and limit, in SQL.

Every test runs on SQLite and on the real PostgreSQL server; expected results come from a Python
comprehension over the same records (``objects_fixtures.RECORDS``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import event, text

from cube_assets.catalog.expressions import properties as p
from cube_assets.client import Catalog, File, Image, Product
from cube_assets.client.collection import ImageCollection
from cube_assets.client.geocontext import GeoContext
from cube_assets.errors import CatalogError
from cube_assets.grids import Tile
from cube_assets_tests.client.objects_fixtures import (  # noqa: F401 - fixtures
    LCF,
    MERGE,
    RECORDS,
    SCENES,
    TILES,
    catalog,
    expected_ids,
    filled,
)

UTC = dt.UTC


def ids(search: Any) -> list[str]:
    return [image.id for image in search]


def test_filter_by_acquired_text_compares_instants_in_utc(filled: Catalog) -> None:
    found = ids(Image.search(filled).filter(p.acquired >= "2023-06-05T10:00:00-03:00"))

    assert found == expected_ids(lambda r: r["acquired"] >= dt.datetime(2023, 6, 5, 13, tzinfo=UTC))


def test_filter_by_year_and_month_text_starts_at_the_first_instant(filled: Catalog) -> None:
    found = ids(Image.search(filled).filter((p.acquired >= "2023-03") & (p.acquired < "2024")))

    assert found == expected_ids(
        lambda r: dt.datetime(2023, 3, 1, tzinfo=UTC) <= r["acquired"] < dt.datetime(2024, 1, 1, tzinfo=UTC)
    )


def test_filter_by_date_and_aware_datetime(filled: Catalog) -> None:
    by_date = ids(Image.search(filled).filter(p.acquired < dt.date(2023, 2, 1)))
    by_datetime = ids(
        Image.search(filled).filter(
            p.acquired < dt.datetime(2023, 1, 31, 21, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
        )
    )

    assert by_date == by_datetime == expected_ids(lambda r: r["acquired"] < dt.datetime(2023, 2, 1, tzinfo=UTC))
    assert len(by_date) == 6  # one merge and one composite per tile


def test_naive_datetime_is_read_as_utc(filled: Catalog) -> None:
    naive = Image.search(filled).filter(p.acquired < dt.datetime(2023, 2, 1))
    aware = Image.search(filled).filter(p.acquired < dt.datetime(2023, 2, 1, tzinfo=UTC))

    assert [image.id for image in naive] == [image.id for image in aware]
    assert naive.count() == 6


@pytest.mark.parametrize(
    ("expression", "predicate"),
    [
        (p.cloud_fraction < 0.2, lambda r: r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.2),
        (p.cloud_fraction <= 0.3, lambda r: r["cloud_fraction"] is not None and r["cloud_fraction"] <= 0.3),
        (p.cloud_fraction == None, lambda r: r["cloud_fraction"] is None),  # noqa: E711 - builds a property expression, not a comparison with None
        (p.cloud_fraction != None, lambda r: r["cloud_fraction"] is not None),  # noqa: E711 - builds a property expression, not a comparison with None
        (p.tile == "B", lambda r: r["tile"] == "B"),
        (p.tile != "B", lambda r: r["tile"] is not None and r["tile"] != "B"),
        (p.product_id.in_([LCF, SCENES]), lambda r: r["product_id"] in (LCF, SCENES)),
        (p.id.prefix("merge_A"), lambda r: r["id"].startswith("merge_A")),
        (p.id.prefix("MERGE"), lambda r: False),  # case-sensitive on both backends
        (p.period_start == "2023-05-01", lambda r: r["period_start"] == dt.date(2023, 5, 1)),
        (
            p.acquired_end > "2023-11-10",
            lambda r: r["acquired_end"] is not None and r["acquired_end"] > dt.datetime(2023, 11, 10, tzinfo=UTC),
        ),
        (p.provider.in_(["cdse", "usgs"]), lambda r: r["provider"] in ("cdse", "usgs")),
        (
            p.fill_fraction.between(0.93, 0.97),
            lambda r: r["fill_fraction"] is not None and 0.93 <= r["fill_fraction"] <= 0.97,
        ),
    ],
    ids=lambda value: repr(value) if not callable(value) else "",
)
def test_scalar_comparisons_match_python(filled: Catalog, expression: Any, predicate: Any) -> None:
    assert ids(Image.search(filled).filter(expression)) == expected_ids(predicate)


def test_tags_equal_means_contains(filled: Catalog) -> None:
    found = ids(Image.search(filled).filter(p.tags == "winter"))

    assert found == expected_ids(lambda r: "winter" in r["tags"])
    assert len(found) == 9


def test_tags_not_equal_and_in(filled: Catalog) -> None:
    not_winter = ids(Image.search(filled).filter(p.tags != "winter"))
    any_of = ids(Image.search(filled).filter(p.tags.in_(["winter", "scene"])))

    assert not_winter == expected_ids(lambda r: "winter" not in r["tags"])
    assert any_of == expected_ids(lambda r: "winter" in r["tags"] or "scene" in r["tags"])


def test_tags_refuse_ordering(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="tags.*== \\(contains\\)"):
        Image.search(filled).filter(p.tags > "a")


@pytest.mark.parametrize(
    ("expression", "predicate"),
    [
        (p.properties.efficacy > 75, lambda r: r["properties"].get("efficacy", -1) > 75),
        (p.properties["efficacy"] <= 20, lambda r: "efficacy" in r["properties"] and r["properties"]["efficacy"] <= 20),
        (p.properties.sensor == "OLI", lambda r: r["properties"].get("sensor") == "OLI"),
        (p.properties.sensor != "OLI", lambda r: "sensor" in r["properties"] and r["properties"]["sensor"] != "OLI"),
        (p.properties.clear == True, lambda r: r["properties"].get("clear") is True),  # noqa: E712 - builds a property expression, not a comparison with True
        (p.properties.quality.score >= 10, lambda r: r["properties"].get("quality", {}).get("score", -1) >= 10),
        (p.properties.observations == None, lambda r: "observations" not in r["properties"]),  # noqa: E711 - builds a property expression, not a comparison with None
        (p.properties.observations.in_([3, 5]), lambda r: r["properties"].get("observations") in (3, 5)),
    ],
    ids=lambda value: repr(value) if not callable(value) else "",
)
def test_json_properties_compare_by_json_type(filled: Catalog, expression: Any, predicate: Any) -> None:
    assert ids(Image.search(filled).filter(expression)) == expected_ids(predicate)


def test_a_number_never_matches_a_text_property(filled: Catalog) -> None:
    # "sensor" holds text: comparing it with a number is false, not an error or a text ordering.
    assert ids(Image.search(filled).filter(p.properties.sensor > 0)) == []


def test_and_or_not_combine_like_python(filled: Catalog) -> None:
    expression = ((p.tile == "A") | (p.tile == "C")) & ~(p.cloud_fraction > 0.5) & (p.product_id == MERGE)

    found = ids(Image.search(filled).filter(expression))

    assert found == expected_ids(
        lambda r: (
            r["tile"] in ("A", "C")
            and not (r["cloud_fraction"] is not None and r["cloud_fraction"] > 0.5)
            and r["product_id"] == MERGE
        )
    )
    assert any(RECORDS_BY_ID[i]["cloud_fraction"] is None for i in found)  # ~ keeps unknown clouds


RECORDS_BY_ID = {r["id"]: r for r in RECORDS}


def test_successive_filters_are_anded_and_searches_are_immutable(filled: Catalog) -> None:
    base = Image.search(filled).filter(p.product_id == MERGE)
    narrowed = base.filter(p.tile == "B")

    assert ids(base) == expected_ids(lambda r: r["product_id"] == MERGE)
    assert ids(narrowed) == expected_ids(lambda r: r["product_id"] == MERGE and r["tile"] == "B")


def test_chained_comparison_is_refused_instead_of_silently_dropping_a_bound() -> None:
    with pytest.raises(CatalogError, match="no truth value"):
        "2023-01-01" < p.acquired < "2024-01-01"  # noqa: B015 - the chained comparison is the refused input under test


def test_unknown_property_is_refused_naming_it_and_the_valid_ones(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="no searchable property 'clouds'.*cloud_fraction"):
        Image.search(filled).filter(p.clouds < 0.2)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (p.cloud_fraction < "low", "'cloud_fraction': expected a finite number"),
        (p.acquired > "yesterday", "'acquired': 'yesterday' is not an ISO 8601"),
        (p.period_start == dt.datetime(2023, 1, 1, tzinfo=UTC), "'period_start': expected a date"),
        (p.tile == 5, "'tile': expected text"),
        (p.properties > 1, "is a mapping"),
        (p.cloud_fraction.foo == 1, "has no keys"),
        (p.cloud_fraction < None, "meaningless"),
    ],
)
def test_bad_values_are_refused_when_filtering(filled: Catalog, expression: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Image.search(filled).filter(expression)


def test_filter_takes_only_expressions(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="property expression"):
        Image.search(filled).filter("cloud_fraction < 0.2")  # type: ignore[arg-type]  # the refused input under test


# ------------------------------------------------------------------------------ geometry


def _intersects(record: dict[str, Any], bounds: tuple[float, float, float, float]) -> bool:
    """The oracle: shapely's exact intersection of the footprint and the box (touching counts)."""
    return bool(record["geometry"].intersects(shapely.geometry.box(*bounds)))


def test_intersects_geojson_matches_footprints_exactly(filled: Catalog) -> None:
    area = (-43.6, -9.8, -43.3, -9.6)  # inside tile C, and inside one part of the MultiPolygon scene

    found = ids(Image.search(filled).intersects(shapely.geometry.mapping(shapely.geometry.box(*area))))

    assert found == expected_ids(lambda r: _intersects(r, area))
    assert "S2A_20240203" in found and not any(i.startswith(("merge_A", "merge_B")) for i in found)


def test_intersects_ignores_a_footprint_whose_bounding_box_alone_meets_the_geometry(filled: Catalog) -> None:
    between_parts = (-44.8, -9.8, -44.6, -9.6)  # in the MultiPolygon scene's bbox, between its two parts

    found = ids(Image.search(filled).filter(p.product_id == SCENES).intersects(shapely.geometry.box(*between_parts)))

    assert found == ["S2B_20240208"]  # the scene over tile B; S2A_20240203's parts are at -45.5 and -43.5
    assert found == expected_ids(lambda r: r["product_id"] == SCENES and _intersects(r, between_parts))


def test_intersects_counts_touching_edges(filled: Catalog) -> None:
    edge = shapely.geometry.LineString([(-45.0, -9.8), (-45.0, -9.2)])  # the A|B border

    found = ids(Image.search(filled).filter(p.product_id == MERGE).intersects(edge))

    assert found == expected_ids(lambda r: r["product_id"] == MERGE and r["tile"] in ("A", "B"))


def test_intersects_accepts_a_feature_a_grid_tile_and_a_geocontext(filled: Catalog) -> None:
    bounds = TILES["B"]
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(shapely.geometry.box(*bounds))}
    tile = Tile(grid_name="T", name="B", col=0, row=0, crs_wkt=_wkt(4326),
                transform=_affine(bounds[0], bounds[3], 0.01), width=100, height=100)  # fmt: skip
    context = GeoContext(bounds, "EPSG:4326", resolution=0.01)

    results = [ids(Image.search(filled).intersects(g)) for g in (feature, tile, context, shapely.geometry.box(*bounds))]

    assert results[0] == results[1] == results[2] == results[3] == expected_ids(lambda r: _intersects(r, bounds))


def _wkt(epsg: int) -> str:
    from pyproj import CRS

    return CRS.from_epsg(epsg).to_wkt()


def _affine(x: float, y: float, resolution: float) -> Any:
    from affine import Affine

    return Affine(resolution, 0, x, 0, -resolution, y)


def test_intersects_again_replaces_the_geometry(filled: Catalog) -> None:
    search = (
        Image.search(filled)
        .intersects(shapely.geometry.box(*TILES["A"]))
        .intersects(shapely.geometry.box(-49.9, -11.9, -49.1, -11.1))
    )

    assert ids(search) == ["S2A_20240213"]


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ({"type": "Polygon", "coordinates": "nope"}, "not valid GeoJSON"),
        (shapely.geometry.box(100, 100, 200, 200), "lon/lat"),
        (shapely.geometry.Polygon(), "empty"),
        (42, "GeoJSON, shapely"),
    ],
)
def test_bad_geometries_are_refused(filled: Catalog, geometry: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Image.search(filled).intersects(geometry)


def test_products_have_no_footprint_to_intersect(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="intersects is for images"):
        Product.search(filled).intersects(shapely.geometry.box(*TILES["A"]))


# ------------------------------------------------------------------------------ sort, limit, count


def test_default_order_is_acquired_then_id(filled: Catalog) -> None:
    assert ids(Image.search(filled)) == expected_ids(lambda r: True)


def test_sort_descending_puts_unknown_values_last_and_breaks_ties_by_id(filled: Catalog) -> None:
    found = ids(Image.search(filled).sort("cloud_fraction", ascending=False))
    dash = ids(Image.search(filled).sort("-cloud_fraction"))

    known = sorted((r for r in RECORDS if r["cloud_fraction"] is not None), key=lambda r: r["id"])
    known.sort(key=lambda r: r["cloud_fraction"], reverse=True)
    unknown = sorted(r["id"] for r in RECORDS if r["cloud_fraction"] is None)
    assert found == dash == [r["id"] for r in known] + unknown


def test_sort_replaces_the_previous_sort(filled: Catalog) -> None:
    found = ids(Image.search(filled).sort("cloud_fraction").sort("id", ascending=False))

    assert found == sorted((r["id"] for r in RECORDS), reverse=True)


def test_limit_keeps_the_first_in_order_and_count_ignores_it(filled: Catalog) -> None:
    search = Image.search(filled).filter(p.product_id == MERGE).sort("acquired", ascending=False).limit(4)

    merges = [r for r in RECORDS if r["product_id"] == MERGE]
    newest_first = sorted(merges, key=lambda r: (-r["acquired"].timestamp(), r["id"]))
    assert (
        ids(search)
        == [r["id"] for r in newest_first[:4]]
        == ["merge_A_202312", "merge_B_202312", "merge_C_202312", "merge_A_202311"]
    )
    assert search.count() == 36


def test_count_counts_matches_in_sql(filled: Catalog) -> None:
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731 - a one-line SQLAlchemy event listener
    event.listen(filled.engine, "before_cursor_execute", listener)
    try:
        count = Image.search(filled).filter(p.tags == "odd").count()
    finally:
        event.remove(filled.engine, "before_cursor_execute", listener)

    assert count == len(expected_ids(lambda r: "odd" in r["tags"]))
    assert len(statements) == 1 and "count(" in statements[0].lower()


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10"])
def test_limit_must_be_a_positive_integer(filled: Catalog, bad: Any) -> None:
    with pytest.raises(CatalogError, match="limit must be a positive integer"):
        Image.search(filled).limit(bad)


@pytest.mark.parametrize(("field", "message"), [("nope", "no searchable property 'nope'"), ("tags", "several values")])
def test_sort_by_unknown_or_multivalued_property_is_refused(filled: Catalog, field: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Image.search(filled).sort(field)


def test_filters_and_limit_run_in_sql(filled: Catalog) -> None:
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731 - a one-line SQLAlchemy event listener
    event.listen(filled.engine, "before_cursor_execute", listener)
    try:
        found = list(
            Image.search(filled).filter(p.cloud_fraction < 0.2).intersects(shapely.geometry.box(*TILES["A"])).limit(2)
        )
    finally:
        event.remove(filled.engine, "before_cursor_execute", listener)

    assert len(found) == 2
    select_images = statements[0].lower()
    assert "cloud_fraction <" in select_images and "limit" in select_images
    assert ("min_lon <=" in select_images) or ("box(point(" in select_images)


@pytest.mark.parametrize("filled", ["postgresql"], indirect=True)  # the GiST index exists on PostgreSQL only
def test_postgresql_search_uses_the_gist_index_for_bbox_and_time(filled: Catalog) -> None:
    search = (
        Image.search(filled)
        .intersects(shapely.geometry.box(*TILES["B"]))
        .filter((p.acquired >= "2023-03-01") & (p.acquired < "2023-06-01"))
    )
    with filled.engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))  # a tiny table would otherwise be scanned
        plan = "\n".join(row[0] for row in connection.execute(text("EXPLAIN " + search.sql())))

    assert "ix_images_bbox_time_span" in plan
    assert ids(search) == expected_ids(
        lambda r: (
            _intersects(r, TILES["B"])
            and dt.datetime(2023, 3, 1, tzinfo=UTC) <= r["acquired"] < dt.datetime(2023, 6, 1, tzinfo=UTC)
        )
    )


@pytest.mark.parametrize("filled", ["postgresql", "postgresql_bbox"], indirect=True)
def test_postgresql_spatial_searches_bound_time_through_the_gist_index_only(filled: Catalog) -> None:
    # With a geometry, the acquired comparison is wrapped so that no B-tree on acquired joins the
    # GiST index in the plan; without one, B-trees (product_id, acquired, ...) may serve it.
    dates = (p.acquired >= "2023-03-01") & (p.acquired < "2023-06-01")
    spatial = Image.search(filled).intersects(shapely.geometry.box(*TILES["B"])).filter(dates)
    temporal = Image.search(filled).filter(p.product_id == MERGE).filter(dates)

    assert "coalesce(images.acquired >=" in spatial.sql() and "tstzrange(" in spatial.sql()
    assert "coalesce(images.acquired" not in temporal.sql() and "images.acquired >=" in temporal.sql()
    assert ids(spatial) == expected_ids(
        lambda r: (
            _intersects(r, TILES["B"])
            and dt.datetime(2023, 3, 1, tzinfo=UTC) <= r["acquired"] < dt.datetime(2023, 6, 1, tzinfo=UTC)
        )
    )


# ------------------------------------------------------------------------------ results


def test_results_are_saved_images_with_their_files(filled: Catalog) -> None:
    image = Image.search(filled).filter(p.id == "merge_C_202303").first()

    assert image is not None and image.state == "saved"
    record = RECORDS_BY_ID["merge_C_202303"]
    assert image.files == record["files"]
    assert image.geometry.equals(record["geometry"])
    assert image.acquired == record["acquired"] and image.acquired.tzinfo is not None


def test_first_of_an_empty_search_is_none(filled: Catalog) -> None:
    assert Image.search(filled).filter(p.tile == "Z").first() is None


def test_collect_returns_an_image_collection_in_order(filled: Catalog) -> None:
    collection = Image.search(filled).filter(p.product_id == LCF).collect()

    assert isinstance(collection, ImageCollection)
    assert [image.id for image in collection] == expected_ids(lambda r: r["product_id"] == LCF)


def test_product_images_are_only_that_products(filled: Catalog) -> None:
    product = Product.get(LCF, catalog=filled)
    assert product is not None

    assert ids(product.images()) == expected_ids(lambda r: r["product_id"] == LCF)
    assert ids(product.images().filter(p.tile == "A")) == expected_ids(
        lambda r: r["product_id"] == LCF and r["tile"] == "A"
    )


def test_products_are_searchable_by_tags_and_text(filled: Catalog) -> None:
    cubes = [product.id for product in Product.search(filled).filter(p.tags == "cube")]
    named = [product.id for product in Product.search(filled).filter(p.name.prefix("Cube"))]

    assert cubes == named == sorted([LCF, MERGE])


def test_iterating_without_limit_streams_every_match_in_batches(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cube_assets.catalog.search as search_module

    monkeypatch.setattr(search_module, "ITERATION_BATCH", 3)
    catalog.products(id="P", name="P").save()
    for index in range(8):
        catalog.images(id=f"i{index}", product_id="P", acquired=dt.datetime(2024, 1, 1 + index, tzinfo=UTC),
                       geometry=shapely.geometry.box(0, 0, 1, 1), crs="EPSG:4326",
                       files={"B1": File(f"/f/{index}.tif", index)}).save()  # fmt: skip

    found = list(Image.search(catalog))

    assert [image.id for image in found] == [f"i{index}" for index in range(8)]
    assert [image.files["B1"].size_bytes for image in found] == list(range(8))
