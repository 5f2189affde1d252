"""Partitions: every asset of a cube is partitioned by tile × period.

Why tile × period for every stage, scene stages included:

* Only built-in, identity partition mappings are needed between stages, so the UI, the
  daemon and CLI backfills all understand the graph (Dagster 1.13 ignores custom
  ``PartitionMapping`` subclasses outside the process that defines them).
* The count stays small: 1,000 tiles × 2 years of 16-day periods is 46,000 partitions per
  asset, under Dagster's advice of about 100k (tile × day would be 730,000).
* Every merge is still addressable by tile and date: a ``tile_merge`` partition writes one
  merge per acquisition date of its period, at ``{cube}/{tile}/{date}/…`` in the store, and
  lists them in its metadata and the catalog.

The limit: one date cannot be re-merged alone from Dagster; its whole period (at most 16
days of a tile) is re-run. Dimension keys (tile names, period start dates) never contain
``|``, which Dagster uses to join them into a multi-partition key ``{period}|{tile}``.
"""

from __future__ import annotations

from dagster import MultiPartitionKey, MultiPartitionsDefinition, StaticPartitionsDefinition

from cube_assets.cube_config import CubeConfig

TILE_DIMENSION = "tile"
PERIOD_DIMENSION = "period"


def cube_partitions(cube: CubeConfig) -> MultiPartitionsDefinition:
    """Return the tile × period partitions of ``cube``.

    Returns:
        A ``MultiPartitionsDefinition`` whose keys print as ``{period}|{tile}``
        (Dagster orders dimensions by name).
    """
    return MultiPartitionsDefinition(
        {
            TILE_DIMENSION: StaticPartitionsDefinition([tile.name for tile in cube.tile_list]),
            PERIOD_DIMENSION: StaticPartitionsDefinition([period.key for period in cube.periods]),
        }
    )


def partition_key(tile: str, period: str) -> MultiPartitionKey:
    """Return the multi-partition key of ``tile`` and ``period``."""
    return MultiPartitionKey({TILE_DIMENSION: tile, PERIOD_DIMENSION: period})


def split_partition_key(key: str | MultiPartitionKey) -> tuple[str, str]:
    """Return ``(tile, period)`` from a multi-partition key or its string form ``{period}|{tile}``."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims[TILE_DIMENSION], dims[PERIOD_DIMENSION]
    period, tile = str(key).split("|")
    return tile, period
