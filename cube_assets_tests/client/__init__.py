"""Tests of cube_assets.client: the object model, collections, grids, scaling, pixel reading and uploads."""
