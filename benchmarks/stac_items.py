"""The cost of one STAC Item as the API builds it, against building it through pystac's objects.

Run::

    .venv/bin/python benchmarks/stac_items.py [--images 500] [--repeat 7]

It writes ``--images`` composites of one cube product (five bands: B04, B08, SCL, CLEAROB,
TOTALOB, each a file with a size) into a fresh SQLite catalog in a temporary folder, reads them
back as a search's views (what an API page reads), and times, best of ``--repeat``, in this
process and one thread:

* **dict**: ``item_document(view, context)`` for every view, the path of API pages and of
  ``export-stac``;
* **pystac**: the reference, the same Item built as a ``pystac.Item`` (``image_to_item``, whose
  ``from_dict`` reads the same dict) and written back with ``to_dict``, the path a client built on
  pystac's objects takes.

Both give the same Item (checked before timing). It prints the microseconds per Item of both, the
load average before and after, and, last, ``stac_item_build_us: X``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shapely.geometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, print_table

from cube_assets.catalog.repository import upsert_image
from cube_assets.catalog.stac import image_to_item
from cube_assets.client import Catalog, File, GenericBand, Image, Product, SpectralBand
from cube_assets.client.stac_export import item_context, item_document

PRODUCT = "S2-16D-LCF"
BANDS = ("B04", "B08", "SCL", "CLEAROB", "TOTALOB")


def fill(catalog: Catalog, images: int) -> None:
    """Store one composite product, its bands and ``images`` composites over a row of tiles."""
    catalog.products(id=PRODUCT, name="Sentinel-2 16-day LCF", tags=["cube", "LCF"]).save()
    for index, name in enumerate(BANDS[:2]):
        SpectralBand(catalog=catalog, product_id=PRODUCT, name=name, data_type="Int16", resolution=10.0,
                     band_index=index, nodata=-9999, data_range=(0, 10000),
                     description=("red", "nir")[index]).save()  # fmt: skip
    for index, name in enumerate(BANDS[2:], start=2):
        GenericBand(catalog=catalog, product_id=PRODUCT, name=name, data_type="UInt8", resolution=10.0,
                    band_index=index, physical_range=(0, 255)).save()  # fmt: skip
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with catalog.transaction() as session:
        for number in range(images):
            tile, period = divmod(number, 23)
            west, north = -60.0 + tile * 0.5, -5.0
            acquired = start + dt.timedelta(days=16 * period)
            image = Image(
                catalog=catalog,
                id=f"LCF_{tile:03d}_{period:02d}",
                name=f"LCF_{tile:03d}_{period:02d}",
                product_id=PRODUCT,
                acquired=acquired,
                acquired_end=acquired + dt.timedelta(days=15, hours=23, minutes=59, seconds=59),
                geometry=shapely.geometry.box(west, north - 0.5, west + 0.5, north),
                crs="EPSG:4326",
                geotransform=(west, 0.0001, 0.0, north, 0.0, -0.0001),
                width=5000,
                height=5000,
                cloud_fraction=(number % 10) / 10,
                fill_fraction=0.97,
                tile=f"{tile:03d}",
                period_start=acquired.date(),
                properties={"observations": number % 12},
                tags=["composite"],
                files={name: File(f"/cubes/lcf/{tile:03d}/{period:02d}/{name}.tif", 20_000_000) for name in BANDS},
            )
            upsert_image(session, image._records())


def best_per_item(function: Callable[[], Any], count: int, repeat: int) -> float:
    """Return the best of ``repeat`` runs of ``function``, in microseconds per Item."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (non-zero if the two paths give different Items)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    arguments = parser.parse_args(argv)
    if arguments.images <= 0 or arguments.repeat <= 0:
        parser.error("--images and --repeat must be positive")

    print(f"# {machine_summary()}")
    with (
        tempfile.TemporaryDirectory(prefix="stac-items-") as folder,
        Catalog(f"sqlite:///{os.path.join(folder, 'catalog.sqlite')}") as catalog,
    ):
        fill(catalog, arguments.images)
        views = list(Image.search(catalog).sort("id").views())
        product = Product.get(PRODUCT, catalog=catalog)
        assert product is not None
        context = item_context(product)
        bands = dict(context.bands)

        def ours() -> list[dict[str, Any]]:
            return [item_document(view, context) for view in views]

        def reference() -> list[dict[str, Any]]:
            return [
                image_to_item(view, bands, composite_function=context.composite_function).to_dict(
                    include_self_link=False, transform_hrefs=False
                )
                for view in views
            ]

        mismatched = [
            mine["id"]
            for mine, theirs in zip(ours(), reference(), strict=True)
            if {key: value for key, value in mine.items() if key != "collection"} != theirs
        ]
        if mismatched:
            print(f"the two paths give different Items: {mismatched[:5]}", file=sys.stderr)
            return 1
        ours_us = best_per_item(ours, len(views), arguments.repeat)
        reference_us = best_per_item(reference, len(views), arguments.repeat)

    print_table(
        [
            ("dict (item_document)", f"{ours_us:.1f}"),
            ("pystac objects (image_to_item + to_dict)", f"{reference_us:.1f}"),
        ],
        ("case", "us_per_item"),
    )
    ratio = reference_us / ours_us
    print(f"# ratio: pystac objects / dict = {ratio:.1f}; {len(views)} Items, best of {arguments.repeat}")
    print(f"# after: {machine_summary()}")
    print(f"stac_item_build_us: {ours_us:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
