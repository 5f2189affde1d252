"""cube-assets: Dagster assets that build analysis-ready data cubes from satellite scenes."""

__version__ = "0.1.0"
